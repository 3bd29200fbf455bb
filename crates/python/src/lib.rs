//! `hyperctl._native`: the decision path of hyperctl (crate `hyperctl-decide`) inside the Python
//! process. One [`Session`] is one training run under a policy: the same featurizer, action
//! mapping, bounds, divergence rule and guard as `hyperctl train`, the library's `LiveSession` and
//! `hyperctl serve` — it *is* `LiveSession`. The Python side (`hyperctl.torch`) measures what the
//! session reads from the user's own training loop.

#[cfg(feature = "gym")]
mod gym;

use std::path::Path;
use std::sync::Mutex;

use hyperctl_decide::{
    EpochReport, Hyperparams, LiveDecision, LiveSession, PolicyController, PolicyFolder, Rollback,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The shipped default policy (`policies/default`), compiled in.
const DEFAULT_CONFIG: &[u8] = include_bytes!("../../../policies/default/config.json");
const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../../policies/default/weights.json");

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// `"default"` (the compiled-in policy) or a policy folder.
fn load_policy(policy: &str) -> PyResult<PolicyFolder> {
    if policy == "default" {
        PolicyFolder::from_bytes(
            Path::new("policies/default (built in)"),
            DEFAULT_CONFIG,
            DEFAULT_WEIGHTS,
        )
        .map_err(value_error)
    } else {
        PolicyFolder::load(Path::new(policy)).map_err(value_error)
    }
}

/// One training run decided by a policy, epoch by epoch (or by decision interval).
#[pyclass(module = "hyperctl._native")]
struct Session {
    inner: Mutex<LiveSession>,
    first: (f64, f64),
}

#[pymethods]
impl Session {
    /// Opens a run of `epochs` intervals starting from `lr` and `momentum` (clamped into the
    /// policy's bounds). `guard=True` turns on the deployment guard (as `train --rollback`).
    #[new]
    #[pyo3(signature = (epochs, lr, momentum, *, policy = "default", steps_per_epoch = 1, guard = false, initial_val_loss = None))]
    fn new(
        epochs: usize,
        lr: f64,
        momentum: f64,
        policy: &str,
        steps_per_epoch: usize,
        guard: bool,
        initial_val_loss: Option<f64>,
    ) -> PyResult<Self> {
        let folder = load_policy(policy)?;
        let controller = PolicyController::new(format!("policy:{policy}"), folder.policy.clone());
        let (inner, hp) = LiveSession::open(
            Box::new(controller),
            folder.config.action_mapping.env.clone(),
            epochs,
            Hyperparams { lr, momentum },
            initial_val_loss,
            steps_per_epoch,
            guard.then_some(Rollback::DEPLOYED),
        )
        .map_err(value_error)?;
        Ok(Self {
            inner: Mutex::new(inner),
            first: (hp.lr, hp.momentum),
        })
    }

    /// The first interval's `(lr, momentum)`.
    #[getter]
    fn first(&self) -> (f64, f64) {
        self.first
    }

    /// Observes the interval just finished and answers for the next one: a dict with `lr`,
    /// `momentum`, `restore_epoch` (None, or the epoch whose saved state to restore),
    /// `keep` (save this state: it is the one to go back to), `diverged`, `done`, `warnings`.
    #[pyo3(signature = (train_losses, val_loss, grad_norms = Vec::new(), update_ratio = None))]
    fn observe<'py>(
        &self,
        py: Python<'py>,
        train_losses: Vec<f64>,
        val_loss: f64,
        grad_norms: Vec<f64>,
        update_ratio: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let report = EpochReport {
            train_losses,
            val_loss,
            grad_norms,
            update_ratio,
            val_metric: None,
        };
        let decision = self
            .inner
            .lock()
            .map_err(value_error)?
            .observe(&report)
            .map_err(value_error)?;
        decision_dict(py, &decision)
    }

    /// Intervals observed so far.
    #[getter]
    fn epochs_done(&self) -> PyResult<usize> {
        Ok(self.inner.lock().map_err(value_error)?.epochs_done())
    }

    /// Intervals undone by the guard so far.
    #[getter]
    fn rollbacks(&self) -> PyResult<usize> {
        Ok(self.inner.lock().map_err(value_error)?.rollbacks())
    }
}

fn decision_dict<'py>(py: Python<'py>, d: &LiveDecision) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("lr", d.hp.lr)?;
    out.set_item("momentum", d.hp.momentum)?;
    out.set_item("restore_epoch", d.restore_epoch)?;
    out.set_item("keep", d.keep)?;
    out.set_item("diverged", d.diverged)?;
    out.set_item("done", d.done)?;
    out.set_item("warnings", d.warnings.clone())?;
    Ok(out)
}

/// A policy's `config.json` as JSON text (`"default"` or a folder), for inspection: its
/// architecture, features, normalization, env settings and provenance.
#[pyfunction]
fn policy_config(policy: &str) -> PyResult<String> {
    let folder = load_policy(policy)?;
    serde_json::to_string(&folder.config).map_err(value_error)
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Session>()?;
    #[cfg(feature = "gym")]
    m.add_class::<gym::PyScheduleEnv>()?;
    m.add("HAS_GYM", cfg!(feature = "gym"))?;
    m.add_function(wrap_pyfunction!(policy_config, m)?)?;
    m.add("FEATURIZER_VERSION", hyperctl_decide::FEATURIZER_VERSION)?;
    m.add(
        "FEATURIZER_VERSIONS",
        hyperctl_decide::FEATURIZER_VERSIONS.to_vec(),
    )?;
    Ok(())
}
