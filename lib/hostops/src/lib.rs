//! What services ask the host to do for them, one typed definition per
//! operation.
//!
//! Decisions live in services; privileged effects (the TPM, the blob
//! store, volumes, app ports, app domains, base OS partitions, the node's power) live in the host, behind
//! operations the node manifest grants each service. An operation belongs
//! to a *target*, the host module that performs it:
//!
//! - [`Target`]: the target's name, version and operation names
//!   ([`TargetSpec`]) and its typed error, the answer of a failed call.
//! - [`Operation`]: the operation's name, its target, and the protobuf
//!   messages of its request and response.
//!
//! [`target!`] declares a target and its operations in one place; the
//! target's module (e.g. [`tpm`]) holds its messages. A service calls an
//! operation with `runtime::service::call::<hostops::tpm::Sign>(&request)`;
//! the bus carries the target, the operation, the target's version and the
//! encoded request; the broker checks the caller's grant for that target
//! and operation against the manifest and hands the request to the host's
//! module for the target, which answers the encoded response or the
//! encoded error.
//!
//! # Versioning
//!
//! Messages evolve by protobuf's rules: a new field takes a new tag, a
//! field is never renumbered or given another type, a removed field's tag
//! is never reused; a reader skips fields it does not know and sees
//! defaults for those an older writer did not send. So a target keeps its
//! version while it only grows: new fields, new operations. Anything else
//! (an operation removed or changing meaning) bumps the target's
//! [`TargetSpec::version`]. Every call carries the version the service was
//! built against, and the broker answers a call of another version with
//! `WrongVersion` before the host module sees it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blobs;
pub mod domains;
pub mod partitions;
pub mod ports;
pub mod power;
pub mod tpm;
pub mod volumes;

use core::time::Duration;

/// What the host and the manifest check know of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSpec {
    /// The target's name on the bus and in the manifest's `call` table.
    pub name: &'static str,
    /// Bumped on incompatible changes (see the crate documentation).
    pub version: u16,
    /// The names of its operations.
    pub operations: &'static [&'static str],
}

impl TargetSpec {
    /// Whether `operation` is one of this target's.
    pub fn serves(&self, operation: &str) -> bool {
        self.operations.contains(&operation)
    }
}

/// A target: a group of operations one host module performs.
pub trait Target {
    const SPEC: TargetSpec;
    /// Why an operation failed, with a code per reason: the payload of a
    /// `Failed` answer.
    type Error: prost::Message + Default + core::fmt::Display;
}

/// One operation: what it is called and what goes in and out.
pub trait Operation {
    type Target: Target;
    /// Its name on the bus and in the manifest.
    const NAME: &'static str;
    type Request: prost::Message + Default;
    type Response: prost::Message + Default;
    /// How long a caller waits for the answer.
    const TIMEOUT: Duration = Duration::from_secs(5);
}

/// Every target this build of the host serves: what the manifest may
/// grant.
pub const CATALOGUE: &[&TargetSpec] = &[
    &<tpm::Tpm as Target>::SPEC,
    &<blobs::Blobs as Target>::SPEC,
    &<volumes::Volumes as Target>::SPEC,
    &<ports::Ports as Target>::SPEC,
    &<domains::Domains as Target>::SPEC,
    &<partitions::Partitions as Target>::SPEC,
    &<power::Power as Target>::SPEC,
];

/// Declares a target and its operations: a unit type implementing
/// [`Target`] and one per operation implementing [`Operation`].
///
/// ```
/// use hostops::tpm::{Empty, PublicKey, SignRequest, Signature, TpmError};
/// use hostops::{Operation, Target};
///
/// hostops::target! {
///     /// A key store of an example.
///     pub struct Keys = "keys", version 1, error TpmError;
///     /// Its public key.
///     Public = "public": Empty => PublicKey;
///     /// Signs with it; slow hardware.
///     Sign = "sign": SignRequest => Signature,
///         timeout core::time::Duration::from_secs(30);
/// }
///
/// assert_eq!(Keys::SPEC.operations, ["public", "sign"]);
/// assert_eq!(<Sign as Operation>::TIMEOUT.as_secs(), 30);
/// ```
#[macro_export]
macro_rules! target {
    (
        $(#[$meta:meta])*
        $vis:vis struct $target:ident = $name:literal, version $version:literal, error $error:ty;
        $(
            $(#[$op_meta:meta])*
            $op:ident = $op_name:literal: $request:ty => $response:ty
                $(, timeout $timeout:expr)?;
        )+
    ) => {
        $(#[$meta])*
        $vis struct $target;

        impl $crate::Target for $target {
            const SPEC: $crate::TargetSpec = $crate::TargetSpec {
                name: $name,
                version: $version,
                operations: &[$($op_name),+],
            };
            type Error = $error;
        }

        $(
            $(#[$op_meta])*
            $vis struct $op;

            impl $crate::Operation for $op {
                type Target = $target;
                const NAME: &'static str = $op_name;
                type Request = $request;
                type Response = $response;
                $(const TIMEOUT: core::time::Duration = $timeout;)?
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_follows_the_bus_naming_rule_without_duplicates() {
        let mut targets = alloc::vec::Vec::new();
        for spec in CATALOGUE {
            assert_eq!(evebus::name::check_name(spec.name), Ok(()), "{spec:?}");
            assert!(!targets.contains(&spec.name), "{} twice", spec.name);
            targets.push(spec.name);
            assert!(!spec.operations.is_empty(), "{spec:?}");
            for (i, op) in spec.operations.iter().enumerate() {
                assert_eq!(evebus::name::check_name(op), Ok(()), "{}.{op}", spec.name);
                assert!(
                    !spec.operations[..i].contains(op),
                    "{}.{op} twice",
                    spec.name
                );
            }
        }
    }
}
