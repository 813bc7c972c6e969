//! Caseledger's read side: the projector runtime and the read models it maintains.
//!
//! Not built yet: the projection engine (checkpoints written with the read-model rows, catch-up
//! then live follow over `commands::EventStore::follow`, rebuilds, one runner per projection
//! across processes) is the next piece of work. The crate exists so that the workspace has its
//! final shape and the dependency rule (`projections` may use `domain` and `commands`, never `api`)
//! is fixed from the start.
