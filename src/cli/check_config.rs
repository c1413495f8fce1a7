//! `synwall check-config`: the settings checked (and with `--host`, against this host as
//! `listen` would) and printed or saved in effect.

use std::net::SocketAddr;
use std::path::Path;

use crate::settings::{Lookup, Resolved};
use anyhow::Context;
use synwall::handoff::HandoffMode;
use synwall::preflight;

use crate::CheckConfigArgs;
use crate::listen::settle_handoff;

/// Every check `listen` makes before attaching, then the effective settings as a configuration
/// file on standard output (like `sshd -T`); warnings on standard error.
pub(crate) fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let settings = args.listen.settings()?;
    let lookup = if args.host {
        Lookup::Dns
    } else {
        Lookup::FormOnly
    };
    let mut resolved = settings.resolve(lookup)?;
    let verdict = if args.host {
        check_on_host(&mut resolved)?
    } else {
        "valid (not checked against this host: --host does)".to_owned()
    };
    if args.quiet {
        return Ok(());
    }
    let text = format!(
        "# synwall check-config: {verdict}.\n\
         # Every setting in effect, defaults included (deploy/synwall.toml documents each):\n{}",
        settings.effective(&resolved).to_toml()
    );
    match &args.write {
        Some(path) => {
            write_replacing(path, &text)
                .with_context(|| format!("writing the settings to {}", path.display()))?;
            println!("wrote the settings in effect to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Replaces `path` with `text` atomically (a file beside it, then a rename), keeping the
/// owner, group and mode of the file replaced; a new file gets mode 0640.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let previous = std::fs::metadata(path).ok();
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.new", std::process::id()));
    let new = path.with_file_name(name);
    let written = (|| {
        std::fs::write(&new, text)?;
        let mode = previous.as_ref().map_or(0o640, |meta| meta.mode() & 0o7777);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode))?;
        if let Some(meta) = &previous {
            std::os::unix::fs::chown(&new, Some(meta.uid()), Some(meta.gid()))?;
        }
        std::fs::rename(&new, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    written
}

/// `check-config --host`: the checks `listen` makes against the host before it attaches
/// anything; settles `handoff = auto` and the queues served. Says what it found.
fn check_on_host(resolved: &mut Resolved) -> anyhow::Result<String> {
    settle_handoff(resolved)?;
    let server = &mut resolved.server;
    let checked = preflight::check(server)?;
    let served: Vec<SocketAddr> = server.listener.served.iter().copied().collect();
    preflight::check_handoff(server.handoff, &served)?;
    for warning in preflight::listener_warnings(server.handoff, &served) {
        tracing::warn!("{warning}");
    }
    if let (HandoffMode::Repair, Some(proxy)) = (server.handoff, &resolved.proxy) {
        // Not an error: the service may start after synwall; the proxy counts each failure.
        if let Err(error) = proxy.upstream.probe(proxy.connect_timeout) {
            tracing::warn!(
                "upstream {}: {error}; connections fail until it accepts",
                proxy.upstream
            );
        }
    }
    server.queues = checked.queues;
    Ok(format!(
        "valid, and this host can serve it ({} has {} rx queue(s))",
        server.interface, checked.rx_queue_count
    ))
}
