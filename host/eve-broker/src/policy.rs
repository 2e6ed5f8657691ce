//! What each service may do on the bus, as the node manifest grants it.

use std::collections::{BTreeMap, BTreeSet};

use evebus::name::{self, NameError};

/// One service's grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grants {
    publish: BTreeSet<String>,
    subscribe: BTreeSet<String>,
    /// Host operations: (target, operation).
    call: BTreeSet<(String, String)>,
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("service name {name:?} {reason}")]
    InvalidService { name: String, reason: NameError },
    #[error("topic {name:?} {reason}")]
    InvalidTopic { name: String, reason: NameError },
    #[error("request target {name:?} {reason}")]
    InvalidTarget { name: String, reason: NameError },
    #[error("operation {name:?} {reason}")]
    InvalidOperation { name: String, reason: NameError },
    #[error("{service} may not publish {topic}: topics starting with @ belong to the broker")]
    BrokerTopic { service: String, topic: String },
    #[error("topic {topic} has two publishers, {first} and {second}")]
    TwoPublishers {
        topic: String,
        first: String,
        second: String,
    },
}

/// The grants of every service. Services not named have no connection.
///
/// Each topic has at most one publisher, which owns its table: that is
/// what lets the broker retain a restarted publisher's items and drop
/// them only on that publisher's word (see `evebus`'s design notes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    services: BTreeMap<String, Grants>,
    publishers: BTreeMap<String, String>,
}

impl Policy {
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Whether `service` may connect at all.
    pub fn knows(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    pub fn may_publish(&self, service: &str, topic: &str) -> bool {
        self.publisher_of(topic) == Some(service)
    }

    pub fn may_subscribe(&self, service: &str, topic: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|g| g.subscribe.contains(topic))
    }

    /// Whether `service` may call `operation` of host target `target`.
    pub fn may_call(&self, service: &str, target: &str, operation: &str) -> bool {
        self.services.get(service).is_some_and(|g| {
            g.call
                .iter()
                .any(|(t, o)| t.as_str() == target && o.as_str() == operation)
        })
    }

    /// The service that owns `topic`.
    pub fn publisher_of(&self, topic: &str) -> Option<&str> {
        self.publishers.get(topic).map(String::as_str)
    }

    /// The topics `service` publishes.
    pub fn published_by<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.services
            .get(service)
            .into_iter()
            .flat_map(|g| g.publish.iter().map(String::as_str))
    }
}

/// Collects grants one at a time (as a manifest is walked) and checks them
/// all in [`PolicyBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct PolicyBuilder {
    services: BTreeMap<String, Grants>,
}

impl PolicyBuilder {
    /// Lets `service` connect, even with no grants (it can still log and
    /// send heartbeats).
    pub fn service(&mut self, service: &str) -> &mut Self {
        self.services.entry(service.to_owned()).or_default();
        self
    }

    /// Makes `service` the publisher of `topic`.
    pub fn publish(&mut self, service: &str, topic: &str) -> &mut Self {
        self.grants(service).publish.insert(topic.to_owned());
        self
    }

    /// Lets `service` subscribe to `topic` (or to the log stream,
    /// [`evebus::LOG_TOPIC`]).
    pub fn subscribe(&mut self, service: &str, topic: &str) -> &mut Self {
        self.grants(service).subscribe.insert(topic.to_owned());
        self
    }

    /// Lets `service` call `operation` of host target `target`.
    pub fn call(&mut self, service: &str, target: &str, operation: &str) -> &mut Self {
        self.grants(service)
            .call
            .insert((target.to_owned(), operation.to_owned()));
        self
    }

    fn grants(&mut self, service: &str) -> &mut Grants {
        self.services.entry(service.to_owned()).or_default()
    }

    pub fn build(&self) -> Result<Policy, PolicyError> {
        let mut publishers = BTreeMap::<String, String>::new();
        for (service, grants) in &self.services {
            name::check_name(service).map_err(|reason| PolicyError::InvalidService {
                name: service.clone(),
                reason,
            })?;
            for topic in grants.publish.iter().chain(&grants.subscribe) {
                name::check_topic(topic).map_err(|reason| PolicyError::InvalidTopic {
                    name: topic.clone(),
                    reason,
                })?;
            }
            for (target, operation) in &grants.call {
                name::check_name(target).map_err(|reason| PolicyError::InvalidTarget {
                    name: target.clone(),
                    reason,
                })?;
                name::check_name(operation).map_err(|reason| PolicyError::InvalidOperation {
                    name: operation.clone(),
                    reason,
                })?;
            }
            for topic in &grants.publish {
                if name::is_broker_topic(topic) {
                    return Err(PolicyError::BrokerTopic {
                        service: service.clone(),
                        topic: topic.clone(),
                    });
                }
                if let Some(first) = publishers.insert(topic.clone(), service.clone()) {
                    return Err(PolicyError::TwoPublishers {
                        topic: topic.clone(),
                        first,
                        second: service.clone(),
                    });
                }
            }
        }
        Ok(Policy {
            services: self.services.clone(),
            publishers,
        })
    }
}
