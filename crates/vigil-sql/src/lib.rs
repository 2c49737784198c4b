//! vigil-sql (work in progress)
