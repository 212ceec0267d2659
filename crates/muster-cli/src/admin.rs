//! Building the admin client from the command line: the local server found through its data
//! dir, or a remote one named by `--url` and `--admin-token`.

use muster_client::{Client, Trust};

use crate::cli::{AdminArgs, default_data_dir};
use crate::error::CliError;

/// The admin client: the server's warnings (a license near its end, a worker prepared that
/// cannot join) are printed on stderr as they arrive, each once.
pub fn client(args: &AdminArgs) -> Result<Client, CliError> {
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    Ok(
        quiet_client(args)?.with_warnings(std::sync::Arc::new(move |warning: &str| {
            let new = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(warning.to_owned());
            if new {
                crate::output::print_warning(warning);
            }
        })),
    )
}

/// The admin client without the server's warnings on stderr: for `muster license`, which
/// prints them itself.
pub fn quiet_client(args: &AdminArgs) -> Result<Client, CliError> {
    let explicit_trust = args.ca_file.is_some() || args.ca_fingerprint.is_some();
    let trust = Trust::from_options(args.ca_file.as_deref(), args.ca_fingerprint.as_deref())
        .map_err(|e| {
            CliError::usage(
                e.to_string(),
                "copy the fingerprint exactly as `muster serve` printed it",
            )
        })?;
    if let Some(url) = &args.url {
        let token = args.admin_token.clone().ok_or_else(|| {
            CliError::usage(
                "`--url` needs the admin credential too",
                "pass `--admin-token` or set MUSTER_ADMIN_TOKEN (it is in the server's data dir, file `admin-token`)",
            )
        })?;
        return Client::new(url, &trust, Some(token)).map_err(CliError::from);
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let local = muster_client::local::discover(&data_dir)?;
    let token = args
        .admin_token
        .clone()
        .or(local.admin_token)
        .ok_or_else(|| {
            CliError::failed(
                format!("no admin credential in `{}`", data_dir.display()),
                "restart `muster serve` to make one, or pass `--admin-token`",
            )
        })?;
    let trust = if explicit_trust { trust } else { local.trust };
    Client::new(&local.url, &trust, Some(token)).map_err(CliError::from)
}
