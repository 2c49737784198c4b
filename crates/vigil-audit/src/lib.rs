//! vigil-audit (work in progress)
