//! Tells the tests whether the shared data sets sit beside the project (`../shared/data`, as in
//! development and CI): tests that read them are `#[cfg_attr(not(shared_data), ignore = …)]`, so
//! a clone without them reports those tests as ignored, and with them a missing file fails.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rerun-if-changed=../shared/data");
    if std::path::Path::new("../shared/data").is_dir() {
        println!("cargo::rustc-cfg=shared_data");
    }
}
