//! The one place that gives a ready compute device: WebGPU in the browser (async init), wgpu
//! natively (Vulkan / Metal / DX12), and a CPU backend everywhere. Every result reports which
//! backend ran and why, so a fallback is never silent.
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum BackendRequest {
    /// WebGPU / wgpu if it starts, else the CPU backend (with the reason recorded).
    #[default]
    Auto,
    Cpu,
    /// The GPU through wgpu: the browser's WebGPU in wasm, Vulkan / Metal / DX12 natively.
    Webgpu,
}

/// What actually runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (the default CPU backend).
    Flex,
    /// burn's ndarray CPU backend (deprecated in burn 0.22; kept for comparison).
    Ndarray,
    /// GPU through wgpu (WebGPU in the browser).
    Webgpu,
}

/// A device ready for work, with the story of how it was chosen.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    pub info: BackendInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackendInfo {
    pub requested: BackendRequest,
    pub backend: Backend,
    /// GPU adapter name (e.g. "SwiftShader Device (Subzero)"), when known.
    pub adapter: Option<String>,
    /// Why this backend runs (e.g. the error that made `auto` fall back to the CPU).
    pub reason: String,
}

impl ComputeDevice {
    /// Hands pooled buffers back to the driver (GPU memory after a cancelled or finished run; a
    /// no-op on CPU backends). Tensors still alive keep theirs.
    pub fn release_memory(&self) {
        use burn::backend::Backend as _;
        burn::backend::Dispatch::memory_cleanup(self.device.clone().inner().as_dispatch());
    }
}

/// The CPU backend this build uses by default: flex when compiled in, else ndarray.
pub fn cpu(requested: BackendRequest, reason: impl Into<String>) -> Result<ComputeDevice> {
    #[cfg(feature = "flex")]
    return cpu_of(Backend::Flex, requested, reason);
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    return cpu_of(Backend::Ndarray, requested, reason);
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    {
        let _ = (requested, reason.into());
        Err(SclabelError::Backend { backend: "cpu".into(), reason: "this build has no CPU backend (features flex / ndarray)".into() })
    }
}

/// A specific CPU backend (for benchmarks comparing them).
pub fn cpu_of(backend: Backend, requested: BackendRequest, reason: impl Into<String>) -> Result<ComputeDevice> {
    let device = match backend {
        #[cfg(feature = "flex")]
        Backend::Flex => Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        Backend::Ndarray => Device::ndarray(),
        other => return Err(SclabelError::Backend { backend: format!("{other:?}").to_lowercase(), reason: "not compiled into this build".into() }),
    };
    Ok(ComputeDevice { device, info: BackendInfo { requested, backend, adapter: None, reason: reason.into() } })
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::*;
    use std::sync::OnceLock;

    /// The runtime can be initialised once per process; later requests reuse it.
    static GPU: OnceLock<(Device, Option<String>)> = OnceLock::new();

    pub async fn webgpu(requested: BackendRequest) -> Result<ComputeDevice> {
        if GPU.get().is_none() {
            let (device, setup) =
                Device::wgpu_options().init_with_setup_async().await.map_err(|e| SclabelError::Backend { backend: "webgpu".into(), reason: e.to_string() })?;
            let info = setup.adapter.get_info();
            // Browsers often hide the adapter name; wgpu's backend (e.g. BrowserWebGpu) is always known.
            let adapter = Some(if info.name.is_empty() { format!("{:?}", info.backend) } else { format!("{} ({:?})", info.name, info.backend) });
            let _ = GPU.set((device, adapter));
        }
        let (device, adapter) = GPU.get().cloned().expect("set above");
        Ok(ComputeDevice { device, info: BackendInfo { requested, backend: Backend::Webgpu, adapter, reason: "requested".into() } })
    }

    /// burn-fusion plans each run of operations by a beam search that keeps up to `max_blocks`
    /// candidate blocks (5 by default). With 3, every scNym setting measured launched fewer
    /// kernels per training epoch, with prediction unchanged (docs/development.md, "burn-fusion's
    /// search width"). Natively, a `burn.toml` in the working directory or above keeps burn's
    /// settings entirely to itself, as burn reads it. Called before any backend starts, since
    /// burn's configuration can be set only before its first read.
    #[cfg(feature = "fusion")]
    pub fn fusion_search() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(set_fusion_search);
    }

    #[cfg(feature = "fusion")]
    fn set_fusion_search() {
        use burn_std::config::{BurnConfig, RuntimeConfig};
        #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows", target_os = "android"))]
        let base = {
            let has_file =
                std::env::current_dir().map(|dir| dir.ancestors().any(|d| BurnConfig::file_names().iter().any(|name| d.join(name).is_file()))).unwrap_or(false);
            if has_file {
                return;
            }
            BurnConfig::default().override_from_env()
        };
        #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows", target_os = "android")))]
        let base = BurnConfig::default();
        // The fields are private: change the one setting through serde.
        let Ok(mut value) = serde_json::to_value(&base) else { return };
        value["fusion"]["beam_search"]["max_blocks"] = 3.into();
        if let Ok(config) = serde_json::from_value::<BurnConfig>(value) {
            // False when something read the configuration first; it then stays as it is.
            let _ = BurnConfig::try_set(config);
        }
    }
}

/// Starts the backend the caller asks for. `Auto` tries the GPU first and falls back to the CPU,
/// recording why in `info.reason`.
///
/// `gpu_support` is the platform's answer to "can wgpu even be tried here?": natively `Ok(())`;
/// in wasm the bindings check for `navigator.gpu` in a window or dedicated worker first, because
/// wgpu panics (rather than erring) where WebGPU is absent, e.g. in Node.
pub async fn select(requested: BackendRequest, gpu_support: std::result::Result<(), String>) -> Result<ComputeDevice> {
    #[cfg(all(feature = "wgpu", feature = "fusion"))]
    gpu::fusion_search();
    let gpu = |requested| async move {
        match gpu_support {
            Ok(()) => gpu_device(requested).await,
            Err(reason) => Err(SclabelError::Backend { backend: "webgpu".into(), reason }),
        }
    };
    match requested {
        BackendRequest::Cpu => cpu(requested, "requested"),
        BackendRequest::Webgpu => gpu(requested).await,
        BackendRequest::Auto => match gpu(requested).await {
            Ok(mut d) => {
                d.info.reason = "auto: WebGPU available".into();
                Ok(d)
            }
            Err(e) => cpu(requested, format!("auto: fell back to CPU because {e}")),
        },
    }
}

async fn gpu_device(requested: BackendRequest) -> Result<ComputeDevice> {
    #[cfg(feature = "wgpu")]
    return gpu::webgpu(requested).await;
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = requested;
        Err(SclabelError::Backend { backend: "webgpu".into(), reason: "this build has no GPU support (feature wgpu)".into() })
    }
}

/// Which executor runs a network: burn's (autodiff, kernels of the device's backend) or the host
/// kernels (`nn::gemm`, `host_linear`, `host_mlp`, `scnym::host_net`), faster on CPU backends for
/// the networks they cover. Chosen here only, and recorded in every training and prediction result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    Burn,
    Host,
}

impl Executor {
    /// The host executor when the caller allows it (`host_network`, on by default), the network
    /// and optimiser are ones the host kernels cover, and the device computes on the CPU; burn's
    /// otherwise (WebGPU, and everything the host kernels do not cover).
    pub fn choose(device: &Device, allowed: bool, host_covers: bool) -> Self {
        if allowed && host_covers && is_cpu(device) {
            Self::Host
        } else {
            Self::Burn
        }
    }
}

/// Whether `device` computes on the CPU (where host-side sparse kernels beat dense ones).
pub fn is_cpu(device: &Device) -> bool {
    let inner = device.clone().inner();
    #[cfg(feature = "flex")]
    if inner == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if inner == Device::ndarray() {
        return true;
    }
    let _ = inner;
    false
}
