//! The pipeline engine: workflows → one DAG (`plan`) → a scheduler that runs it
//! (`run`) through a [`runner::TaskRunner`], reporting every change as an event.

pub mod events;
pub mod plan;
pub mod redact;
pub mod run;
pub mod runner;
