//! vigil-api (work in progress)
