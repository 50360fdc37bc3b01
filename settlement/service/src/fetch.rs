//! Fetching a namespace's inputs of one block from DA, by the shared extraction rule.

use std::time::Duration;

use lamina_interfaces::DataAvailability;
use lamina_interfaces::inputs::{self, Extracted};
use lamina_primitives::{AvailabilityCertificate, DataCommitment, FinalizedBlock, Namespace};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// One square's blobs of `ns`, retried until available. A commitment that is unusable
/// for everyone ([`lamina_interfaces::DaError::is_final_for_everyone`]: a bad commitment, rejected blobs,
/// or rows proven wrongly encoded by the DA layer's canonical rule) counts as no blobs,
/// as it does for every execution replica.
pub async fn square<D: DataAvailability>(
    da: &D,
    commitment: &DataCommitment,
    ns: Namespace,
    shutdown: &CancellationToken,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match da.get_namespace(commitment, ns).await {
            Ok(b) => return Ok(b),
            Err(e) if e.is_final_for_everyone() => {
                tracing::warn!(target: "lamina::settlement", root = %commitment.data_root, error = %e, "square skipped");
                return Ok(Vec::new());
            }
            Err(e) => {
                tracing::warn!(target: "lamina::settlement", root = %commitment.data_root, error = %e, "DA fetch failed; retrying");
                metrics::counter!("lamina_settlement_da_retries_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Error::Internal("shutdown during DA fetch".into())),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The transactions of `ns` in `certs` (a block's certificates holding `ns`, in block
/// order), fetched concurrently and extracted by the shared rule.
pub async fn namespace<D: DataAvailability>(
    da: &D,
    certs: &[AvailabilityCertificate],
    ns: Namespace,
    shutdown: &CancellationToken,
) -> Result<Extracted, Error> {
    let squares = futures::future::try_join_all(certs.iter().map(|c| square(da, &c.commitment, ns, shutdown))).await?;
    Ok(inputs::namespace_transactions(ns, &squares))
}

/// The certificates of `block` that hold `ns`, cloned.
pub fn certs(block: &FinalizedBlock, ns: Namespace) -> Vec<AvailabilityCertificate> {
    inputs::namespace_certs(block, ns).cloned().collect()
}
