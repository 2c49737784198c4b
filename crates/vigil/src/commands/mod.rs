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
use vigil_audit::export::StoreSource;
use vigil_store::Stores;

/// The config (if given) and the store a command works on, one handle per concern.
pub fn open(args: &StoreArgs) -> Result<(Option<Config>, Stores)> {
    let config = match &args.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let store = crate::wiring::open_store(config.as_ref(), args.store.as_deref())?;
    Ok((config, store))
}

/// What exports and bundles read: the chain, and the grants and access requests that say who
/// an older grant or request was for.
pub fn export_source(stores: &Stores) -> StoreSource<'_> {
    StoreSource {
        log: &*stores.audit,
        grants: &*stores.grants,
        requests: &*stores.access_requests,
    }
}
