//! Figures of the kubelet-style pod benchmark (client_cri.rs `pod_start_benchmark`, run by
//! `runtime-tests/bench/run cri-pods`): per-pod step durations, their medians and p90s per
//! handler, wall times of the sequential and concurrent batches, and the ratios of the first
//! handler (kakuri) against the second (runc). Only numbers for people: nothing here asserts
//! a duration.

use std::time::Duration;

/// The timed steps of one pod, in order. `pod_start` is RunPodSandbox up to the first
/// ContainerStatus saying RUNNING (it includes the steps before it); `lifecycle` is the whole
/// pod, RunPodSandbox to RemovePodSandbox.
pub const STEPS: [(&str, &str); 10] = [
    ("run_sandbox", "RunPodSandbox"),
    ("sandbox_status", "PodSandboxStatus + etc-hosts"),
    ("create", "CreateContainer"),
    ("start", "StartContainer"),
    ("running", "ContainerStatus until RUNNING"),
    ("pod_start", "**pod start** (sandbox → RUNNING)"),
    ("exec", "ExecSync (probe)"),
    ("stop", "StopContainer + StopPodSandbox"),
    ("remove", "RemoveContainer + RemovePodSandbox"),
    ("lifecycle", "whole pod lifecycle"),
];

/// Index of a step in [`STEPS`].
pub fn step(name: &str) -> usize {
    STEPS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown benchmark step {name}"))
}

/// How many pods, from the environment (`runtime-tests/bench/run cri-pods` sets them); the
/// defaults are the smoke run of the CRI suite.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Pods per handler, one after the other (`KAKURI_CRI_BENCH_PODS`, default 2).
    pub sequential: usize,
    /// Pods per handler started at once (`KAKURI_CRI_BENCH_CONCURRENT`, default 2).
    pub concurrent: usize,
    /// Concurrent batches per handler (`KAKURI_CRI_BENCH_ROUNDS`, default 1).
    pub rounds: usize,
}

impl Params {
    pub fn from_env() -> Params {
        let get = |k: &str, d: usize| -> usize {
            match std::env::var(k) {
                Ok(v) => v
                    .parse()
                    .ok()
                    .filter(|n: &usize| *n > 0)
                    .unwrap_or_else(|| panic!("{k}={v:?}: expected a positive integer")),
                Err(_) => d,
            }
        };
        Params {
            sequential: get("KAKURI_CRI_BENCH_PODS", 2),
            concurrent: get("KAKURI_CRI_BENCH_CONCURRENT", 2),
            rounds: get("KAKURI_CRI_BENCH_ROUNDS", 1),
        }
    }
}

/// One pod's step durations, [`STEPS`] order.
#[derive(Clone, Debug)]
pub struct Sample {
    pub handler: String,
    /// "sequential" or "concurrent".
    pub mode: &'static str,
    pub steps: [Duration; STEPS.len()],
}

/// Wall time of a batch: the sequential pods of a handler (sum of their lifecycles, since the
/// handlers' pods are interleaved) or one concurrent batch (first RunPodSandbox to last
/// RemovePodSandbox).
#[derive(Clone, Debug)]
pub struct Batch {
    pub handler: String,
    pub mode: &'static str,
    pub pods: usize,
    pub wall: Duration,
}

/// The `q` quantile (nearest rank) of `v`, which is sorted here.
pub fn quantile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "n/a".into()
    } else {
        format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
    }
}

/// The figures: per mode and handler, medians and p90s of each step, batch walls.
pub struct Report {
    pub handlers: Vec<String>,
    pub params: Params,
    pub samples: Vec<Sample>,
    pub batches: Vec<Batch>,
}

impl Report {
    fn durations(&self, handler: &str, mode: &str, step: usize) -> Vec<Duration> {
        self.samples
            .iter()
            .filter(|s| s.handler == handler && s.mode == mode)
            .map(|s| s.steps[step])
            .collect()
    }

    /// Median of the batch walls of `handler` in `mode`.
    fn wall(&self, handler: &str, mode: &str) -> Duration {
        let mut w: Vec<Duration> = self
            .batches
            .iter()
            .filter(|b| b.handler == handler && b.mode == mode)
            .map(|b| b.wall)
            .collect();
        quantile(&mut w, 0.5)
    }

    /// Rows of (label, value per handler); durations in ms.
    fn rows(&self) -> Vec<(String, Vec<Duration>)> {
        let p = self.params;
        let mut rows = Vec::new();
        for (mode, pods) in [("sequential", p.sequential), ("concurrent", p.concurrent)] {
            let per = |step: usize, q: f64| -> Vec<Duration> {
                self.handlers
                    .iter()
                    .map(|h| quantile(&mut self.durations(h, mode, step), q))
                    .collect()
            };
            let start = step("pod_start");
            rows.push((format!("{mode}: pod start median"), per(start, 0.5)));
            rows.push((format!("{mode}: pod start p90"), per(start, 0.9)));
            for (i, (name, label)) in STEPS.iter().enumerate() {
                if *name != "pod_start" {
                    rows.push((format!("{mode}: {label} median"), per(i, 0.5)));
                }
            }
            let wall_label = if mode == "sequential" {
                format!("sequential: total wall, {pods} pods one after the other")
            } else {
                format!(
                    "concurrent: wall of {pods} pods at once (median of {} batches)",
                    p.rounds
                )
            };
            rows.push((
                wall_label,
                self.handlers.iter().map(|h| self.wall(h, mode)).collect(),
            ));
        }
        rows
    }

    /// A markdown table: one row per figure, one column per handler (ms), and the ratio of the
    /// first handler to the second.
    pub fn markdown(&self) -> String {
        let (a, b) = (&self.handlers[0], &self.handlers[1]);
        let mut out = format!("| figure (ms) | {a} | {b} | {a}/{b} |\n|---|---:|---:|---:|\n");
        for (label, v) in self.rows() {
            out.push_str(&format!(
                "| {label} | {} | {} | {} |\n",
                ms(v[0]),
                ms(v[1]),
                ratio(v[0], v[1])
            ));
        }
        out
    }

    /// Everything, machine-readable: the parameters, the table's rows (ns) and every sample.
    pub fn json(&self) -> serde_json::Value {
        let ns = |d: &Duration| d.as_nanos() as u64;
        serde_json::json!({
            "handlers": self.handlers,
            "sequential_pods": self.params.sequential,
            "concurrent_pods": self.params.concurrent,
            "concurrent_rounds": self.params.rounds,
            "rows": self.rows().iter().map(|(label, v)| serde_json::json!({
                "figure": label,
                "ns": v.iter().map(ns).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "batches": self.batches.iter().map(|b| serde_json::json!({
                "handler": b.handler, "mode": b.mode, "pods": b.pods, "wall_ns": ns(&b.wall),
            })).collect::<Vec<_>>(),
            "samples": self.samples.iter().map(|s| serde_json::json!({
                "handler": s.handler,
                "mode": s.mode,
                "steps_ns": STEPS.iter().zip(&s.steps)
                    .map(|((n, _), d)| (n.to_string(), serde_json::json!(ns(d))))
                    .collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        })
    }
}
