//! The kubelet side of the CRI suite (client_cri.rs): a blocking client of containerd's CRI
//! `runtime.v1` services over its unix socket (k8s-cri's generated types, tonic), and a small
//! websocket client for the streaming server's `v4.channel.k8s.io` protocol, the one
//! `kubectl exec`/`attach` reach the kubelet's streaming URLs with.

#![allow(dead_code)] // helpers shared by the scenarios; not every one uses each

pub mod bench;
pub mod ws;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1;

/// A connection to containerd's CRI services. Every call blocks the calling thread on a
/// one-worker tokio runtime (the channel's background task runs there), so the scenarios stay
/// plain synchronous code and may run in parallel threads.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

/// Per-call deadline: a CRI call that hangs is a failure, not a stuck test.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl Cri {
    pub fn connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The URI is not used: every connection goes to the unix socket.
                Endpoint::try_from("http://[::]:0")
                    .map_err(|e| e.to_string())?
                    .timeout(CALL_TIMEOUT)
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        Ok(Cri { rt, channel })
    }

    fn block<T>(
        &self,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt.block_on(f).map(|r| r.into_inner())
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    pub fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    pub fn version(&self) -> Result<cri::VersionResponse, tonic::Status> {
        self.block(self.runtime().version(cri::VersionRequest {
            version: "v1".into(),
        }))
    }

    pub fn status(&self) -> Result<cri::StatusResponse, tonic::Status> {
        self.block(self.runtime().status(cri::StatusRequest { verbose: false }))
    }

    pub fn image_status(&self, image: &str) -> Result<cri::ImageStatusResponse, tonic::Status> {
        self.block(self.images().image_status(cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        }))
    }

    pub fn list_images(&self) -> Result<cri::ListImagesResponse, tonic::Status> {
        self.block(
            self.images()
                .list_images(cri::ListImagesRequest { filter: None }),
        )
    }

    pub fn run_pod_sandbox(
        &self,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        self.block(self.runtime().run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        }))
        .map(|r| r.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, tonic::Status> {
        self.block(
            self.runtime()
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose,
                }),
        )
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        self.block(self.runtime().stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        }))
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        self.block(
            self.runtime()
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.into(),
                }),
        )
        .map(drop)
    }

    pub fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>, tonic::Status> {
        self.block(
            self.runtime()
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.items)
    }

    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: &cri::ContainerConfig,
        sandbox_config: &cri::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        self.block(
            self.runtime()
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    config: Some(config.clone()),
                    sandbox_config: Some(sandbox_config.clone()),
                }),
        )
        .map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        self.block(self.runtime().start_container(cri::StartContainerRequest {
            container_id: id.into(),
        }))
        .map(drop)
    }

    pub fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, tonic::Status> {
        self.block(
            self.runtime()
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                }),
        )
        .map(|r| r.status.unwrap_or_default())
    }

    /// The verbose `info` map (containerd puts the runtime spec and the pid there).
    pub fn container_info(&self, id: &str) -> Result<serde_json::Value, tonic::Status> {
        let r = self.block(
            self.runtime()
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: true,
                }),
        )?;
        let info = r.info.get("info").cloned().unwrap_or_default();
        Ok(serde_json::from_str(&info).unwrap_or(serde_json::Value::Null))
    }

    pub fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<(), tonic::Status> {
        self.block(self.runtime().stop_container(cri::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_secs,
        }))
        .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        self.block(
            self.runtime()
                .remove_container(cri::RemoveContainerRequest {
                    container_id: id.into(),
                }),
        )
        .map(drop)
    }

    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.block(self.runtime().exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_secs,
        }))
    }

    pub fn exec(&self, req: cri::ExecRequest) -> Result<String, tonic::Status> {
        self.block(self.runtime().exec(req)).map(|r| r.url)
    }

    pub fn attach(&self, req: cri::AttachRequest) -> Result<String, tonic::Status> {
        self.block(self.runtime().attach(req)).map(|r| r.url)
    }

    pub fn reopen_container_log(&self, id: &str) -> Result<(), tonic::Status> {
        self.block(
            self.runtime()
                .reopen_container_log(cri::ReopenContainerLogRequest {
                    container_id: id.into(),
                }),
        )
        .map(drop)
    }

    pub fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, tonic::Status> {
        self.block(self.runtime().container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        }))
        .map(|r| r.stats.unwrap_or_default())
    }

    pub fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, tonic::Status> {
        self.block(
            self.runtime()
                .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                    pod_sandbox_id: id.into(),
                }),
        )
        .map(|r| r.stats.unwrap_or_default())
    }

    pub fn update_container_resources(
        &self,
        id: &str,
        linux: cri::LinuxContainerResources,
    ) -> Result<(), tonic::Status> {
        self.block(self.runtime().update_container_resources(
            cri::UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux: Some(linux),
                ..Default::default()
            },
        ))
        .map(drop)
    }
}

pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// The masked paths a kubelet sends for a container that is not privileged (the Kubernetes
/// `DefaultProcMount` list; the runtime does not add them by itself under CRI).
pub const KUBELET_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// The read-only paths a kubelet sends with them.
pub const KUBELET_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
