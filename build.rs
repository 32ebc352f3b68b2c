//! Tells the tests whether the shared data sets sit beside the project (`../shared/data`, as in
//! development and CI): tests that read them are `#[cfg_attr(not(shared_data), ignore = …)]`, so
//! a clone without them reports those tests as ignored, and with them a missing file fails.
//! Likewise `demo_data` for the demo's files in www/data (scripts/setup.sh fetches them).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rustc-check-cfg=cfg(demo_data)");
    // A path that does not exist would rerun this script (and rebuild the crate) on every build:
    // watch the folder it would appear in instead.
    let watch = |path: &str, parent: &str| println!("cargo::rerun-if-changed={}", if std::path::Path::new(path).exists() { path } else { parent });
    watch("../shared/data", "..");
    watch("www/data", "www");
    if std::path::Path::new("../shared/data").is_dir() {
        println!("cargo::rustc-cfg=shared_data");
    }
    if std::path::Path::new("www/data/pbmc68k_reduced.h5ad").is_file() {
        println!("cargo::rustc-cfg=demo_data");
    }
}
