//! The operator's commands besides `serve` and `demo`.

pub mod audit;
pub mod config_check;
pub mod evidence;
pub mod export;
pub mod grant;
pub mod policy;
pub mod replay;
pub mod request;
pub mod sessions;
pub mod token;

use crate::config::Config;
use crate::StoreArgs;
use anyhow::Result;
use std::sync::Arc;
use vigil_store::Store;

/// The config (if given) and the store a command works on.
pub fn open(args: &StoreArgs) -> Result<(Option<Config>, Arc<dyn Store>)> {
    let config = match &args.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let store = crate::wiring::open_store(config.as_ref(), args.store.as_deref())?;
    Ok((config, store))
}
