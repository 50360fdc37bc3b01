//! What this binary was built from: the crate version and the git revision embedded at
//! build time (`build.rs`), for `lamina --version`, `/status`, the `lamina_build_info`
//! metric and the revision `lamina bench` records (wherever it is run from).

/// The git commit the binary was built from (`VERGEN_IDEMPOTENT_OUTPUT` when built
/// outside a git checkout).
pub const GIT_SHA: &str = env!("VERGEN_GIT_SHA");

/// `"true"` when tracked files had uncommitted changes at build time.
pub const GIT_DIRTY: &str = env!("VERGEN_GIT_DIRTY");

/// The `--version` text: `<version> (git <sha>[, dirty])`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("VERGEN_GIT_SHA"),
    ", uncommitted changes: ",
    env!("VERGEN_GIT_DIRTY"),
    ")"
);

/// True when the revision is a real commit id (not vergen's placeholder).
pub fn has_revision() -> bool {
    GIT_SHA.len() == 40 && GIT_SHA.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The revision for benchmark results: `None` when built outside a checkout.
#[cfg(feature = "bench")]
pub fn git() -> Option<lamina_benches::results::GitInfo> {
    has_revision()
        .then(|| lamina_benches::results::GitInfo { revision: GIT_SHA.to_string(), dirty: GIT_DIRTY == "true" })
}

/// Publishes `lamina_build_info{version, revision, module} 1` (the Prometheus
/// convention: a constant series whose labels carry the facts).
pub fn publish_metric(module: &str) {
    metrics::describe_gauge!("lamina_build_info", "Constant 1; labels: the version and git revision of the binary.");
    metrics::gauge!(
        "lamina_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "revision" => GIT_SHA,
        "dirty" => GIT_DIRTY,
        "module" => module.to_string()
    )
    .set(1.0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_revision() {
        assert!(super::VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(super::VERSION.contains(super::GIT_SHA));
    }
}
