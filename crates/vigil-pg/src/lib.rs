//! vigil-pg (work in progress)
