//! vigil-identity (work in progress)
