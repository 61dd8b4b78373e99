//! `patchline demo`.
use crate::CmdResult;
use std::path::Path;
pub fn run(_data_dir: &Path, _keep: bool) -> CmdResult {
    Ok(())
}
