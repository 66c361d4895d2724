//! The Kubernetes apply engine shared by gantry's `manifest`, `helm` and `compose` plugins:
//! reading manifests as kubectl does, identities that survive API version moves, apply in
//! kind order, strategy enforcement, prune, readiness, rollback, destroy and plan.
//!
//! Everything here is plain Rust over the [`kube::Kube`] trait, so it builds natively and is
//! unit-tested with an in-memory cluster; inside a plugin the trait is a kube session.

pub mod diff;
pub mod engine;
pub mod key;
pub mod kinds;
pub mod kube;
pub mod params;
pub mod shape;
pub mod state;
pub mod yaml;

#[cfg(test)]
mod tests;

pub use engine::{Applied, Prepared, Settings};
pub use key::ObjectKey;
pub use kinds::Catalog;
pub use shape::Strategy;
pub use state::State;
pub use yaml::{Manifest, Origin, ParseError};
