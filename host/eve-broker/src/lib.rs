//! The host side of the node bus: a publish/subscribe broker that enforces
//! the manifest.
//!
//! The wire format, the table semantics and restart survival are described
//! in `evebus`, which this crate uses for all encoding. Here:
//!
//! - [`Policy`] says, per service, which topics it publishes (each topic
//!   has one publisher), which it may subscribe to, and which host
//!   operations (target and operation) it may call. The host builds it
//!   from the node manifest.
//! - [`Broker::attach`] serves one service's stream (its VM's virtio-console
//!   socket) on a reader and a writer thread. The first message must be a
//!   Hello naming that service. Every later message is checked against the
//!   policy; a denied operation gets a Denied (or a Denied response) and
//!   the connection stays up; a malformed frame or a message only the
//!   broker sends drops that connection alone.
//! - Tables live in the broker, outlive connections and, for selected
//!   topics, host restarts ([`BrokerConfig::persistent_topics`]). Topics
//!   starting with `@` are the broker's own: the host fills them
//!   ([`Broker::publish_own`]) and services may only subscribe.
//! - Log records go to a [`LogSink`] (the host log) and to subscribers of
//!   [`evebus::LOG_TOPIC`], with a bounded backlog while there are none.
//! - Requests go to [`RpcHandler`]s by target name, with the caller's name,
//!   once the target's version, the operation and the caller's grant of it
//!   are checked; each refusal has its own status (no such target, wrong
//!   version, no such operation, denied), and so have the handler's (bad
//!   request, failed with the target's typed error, busy).
//! - Heartbeats are recorded per service ([`Broker::status`],
//!   [`Broker::last_heartbeat`]) for the supervisor that restarts services
//!   whose beats stop.

mod broker;
mod persist;
mod policy;
mod rpc;
mod stream;
mod table;

pub use broker::{
    AttachError, Broker, BrokerConfig, HostLog, LogEntry, LogSink, OpenError, OwnPublishError,
    ServiceStatus,
};
pub use persist::LoadError;
pub use policy::{Policy, PolicyBuilder, PolicyError};
pub use rpc::{RpcError, RpcHandler};
pub use stream::BusStream;
