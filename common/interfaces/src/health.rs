//! Health reporting from libraries to the admin server, without a telemetry dependency.
//!
//! A service holds a [`Health`] handle and records named readiness checks ("peers",
//! "caught_up", …) and status fields; the binary's admin server (lamina-telemetry)
//! serves them as `/readyz` and `/status`. Ready means every registered check passes
//! (and at least one is registered), not merely that the process is up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Whether the check passes.
    pub ok: bool,
    /// Why, for humans (`"3/3 peers connected"`).
    pub detail: String,
}

#[derive(Default, Debug)]
struct State {
    checks: BTreeMap<String, Check>,
    status: BTreeMap<String, serde_json::Value>,
}

/// A cloneable handle shared by a service and its admin server.
#[derive(Clone, Default, Debug)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

impl Health {
    /// An empty handle (not ready until a check is registered and passes).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the result of the readiness check `name`.
    pub fn set_check(&self, name: &str, ok: bool, detail: impl Into<String>) {
        self.lock().checks.insert(name.to_string(), Check { ok, detail: detail.into() });
    }

    /// Sets a status field shown in `/status`.
    pub fn set_status(&self, key: &str, value: impl serde::Serialize) {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.lock().status.insert(key.to_string(), v);
    }

    /// True when at least one check is registered and all pass.
    pub fn is_ready(&self) -> bool {
        let st = self.lock();
        !st.checks.is_empty() && st.checks.values().all(|c| c.ok)
    }

    /// All checks, by name.
    pub fn checks(&self) -> BTreeMap<String, Check> {
        self.lock().checks.clone()
    }

    /// The `/status` document: `{"ready": bool, "checks": {...}, <status fields>}`.
    pub fn status_json(&self) -> serde_json::Value {
        let ready = self.is_ready();
        let st = self.lock();
        let mut obj = serde_json::Map::new();
        obj.insert("ready".into(), serde_json::Value::Bool(ready));
        obj.insert("checks".into(), serde_json::to_value(&st.checks).unwrap_or_default());
        for (k, v) in &st.status {
            obj.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_checks_pass() {
        let h = Health::new();
        assert!(!h.is_ready());
        h.set_check("peers", true, "3/3");
        h.set_check("caught_up", false, "behind by 4");
        assert!(!h.is_ready());
        h.set_check("caught_up", true, "at tip");
        assert!(h.is_ready());
        h.set_status("height", 12u64);
        let s = h.status_json();
        assert_eq!(s["ready"], true);
        assert_eq!(s["height"], 12);
        assert_eq!(s["checks"]["peers"]["detail"], "3/3");
    }
}
