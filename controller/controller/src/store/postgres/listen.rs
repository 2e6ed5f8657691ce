//! Changes made by other replicas, through LISTEN/NOTIFY: every write that
//! makes a replica's cache stale sends `kind:uuid` on [`CHANNEL`] in its
//! own transaction, so it is delivered exactly when it commits. A replica
//! listens on a connection of its own; when that link is lost it reconnects
//! and reports [`Change::Resync`], since notifications may have been missed.

use std::time::Duration;

use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::store::{Change, ChangeSink};

/// The notification channel.
pub const CHANNEL: &str = "eve_controller";
/// Wait between reconnection attempts.
const RETRY: Duration = Duration::from_secs(1);

/// The payload announcing `change`.
pub fn payload(kind: &str, uuid: &str) -> String {
    format!("{kind}:{uuid}")
}

/// The change a payload announces; unknown kinds are ignored.
pub fn parse(payload: &str) -> Option<Change> {
    let (kind, uuid) = payload.split_once(':')?;
    let uuid = uuid.to_owned();
    Some(match kind {
        "device" => Change::DeviceAdded(uuid),
        "deleted" => Change::DeviceDeleted(uuid),
        "config" => Change::Config(uuid),
        "attest" => Change::Attest(uuid),
        _ => return None,
    })
}

/// Listens for as long as the runtime runs, delivering to `sink`.
pub fn spawn(handle: &tokio::runtime::Handle, config: Config, sink: ChangeSink) {
    handle.spawn(async move {
        loop {
            // Whatever happened before this (re)connection is unknown.
            let _ = listen_once(&config, &sink).await;
            tokio::time::sleep(RETRY).await;
        }
    });
}

async fn listen_once(config: &Config, sink: &ChangeSink) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message
                && tx.send(n.payload().to_owned()).is_err()
            {
                break;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    sink(Change::Resync);
    while let Some(payload) = rx.recv().await {
        if let Some(change) = parse(&payload) {
            sink(change);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for (kind, change) in [
            ("device", Change::DeviceAdded("u".into())),
            ("deleted", Change::DeviceDeleted("u".into())),
            ("config", Change::Config("u".into())),
            ("attest", Change::Attest("u".into())),
        ] {
            assert_eq!(parse(&payload(kind, "u")), Some(change));
        }
        assert_eq!(parse("other:u"), None);
        assert_eq!(parse("nocolon"), None);
    }
}
