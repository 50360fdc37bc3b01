//! The ordered log over QUIC (`lamina/log/1`): the server side on a validator. Its
//! client, `LogClient`, lives in `lamina-consensus-client`.

use std::time::Duration;

use lamina_interfaces::{LogError, OrderedLog};
use lamina_net::{Handler, Reject};
use lamina_primitives::{Height, NodeId};

use crate::ledger::LocalLog;
use crate::protocol::{LogProtocol, LogRequest, LogResponse, MAX_LOG_RESPONSE, MAX_READ_WAIT, ReadRequest};

/// Serves `lamina/log/1` from this validator's ledger.
pub(crate) struct LogHandler {
    pub(crate) log: LocalLog,
    pub(crate) max_blocks: u32,
}

impl Handler<LogProtocol> for LogHandler {
    async fn request(&self, _peer: NodeId, req: LogRequest) -> Result<LogResponse, Reject> {
        match req {
            LogRequest::Tip => {
                let tip = self.log.tip().await.map_err(|e| Reject::unavailable(e.to_string()))?;
                Ok(LogResponse::Tip(tip.0))
            }
            LogRequest::Read(ReadRequest { from, max, wait_ms }) => {
                if from == 0 {
                    return Err(Reject::bad_request("height 0 has no block"));
                }
                let wait = Duration::from_millis(u64::from(wait_ms)).min(MAX_READ_WAIT);
                let max = max.clamp(1, self.max_blocks) as usize;
                match self.log.read_wait(Height(from), max, MAX_LOG_RESPONSE, wait).await {
                    Ok(blocks) => Ok(LogResponse::Blocks(blocks)),
                    Err(LogError::Pruned { oldest, .. }) => Ok(LogResponse::Pruned(oldest.0)),
                    Err(e) => Err(Reject::unavailable(e.to_string())),
                }
            }
        }
    }
}
