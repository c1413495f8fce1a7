//! Settings: files and flags, resolution and its errors, reloads, the effective settings, and
//! the defaults the docs and deploy/synwall.toml state.

use super::keys::KEYS;
use super::spelling::{HandoffMode, ProxyProtocol, Syncookies, XdpMode};
use super::*;

fn parse(text: &str) -> Result<Settings, String> {
    toml::from_str(text).map_err(|error: toml::de::Error| error.to_string())
}

fn minimal() -> Settings {
    Settings {
        interface: Some("lo".into()),
        listen: Some(vec!["127.0.0.1:80".parse().unwrap()]),
        upstream: Some("127.0.0.1:8080".into()),
        ..Settings::default()
    }
}

#[test]
fn test_file_keys_match_flags() {
    let settings = parse(
        r#"
        interface = "eth0"
        listen = ["0.0.0.0:443", "[::]:443"]
        upstream = "127.0.0.1:8443"
        upstream-timeout = "500ms"
        syncookies = "always"
        max-syn-backlog = 1024
        abort-on-overflow = true
        cookie-mss-v4 = [536, 1200, 1400, 1460]
        xdp-mode = "generic"
        key-rotation = "2m"
        "#,
    )
    .unwrap();
    assert_eq!(settings.syncookies, Some(Syncookies::Always));
    assert_eq!(settings.upstream_timeout, Some(Duration::from_millis(500)));
    assert_eq!(settings.key_rotation, Some(Duration::from_secs(120)));
    assert_eq!(settings.xdp_mode, Some(XdpMode::Generic));
    assert_eq!(settings.listen.as_ref().map(Vec::len), Some(2));
}

#[test]
fn test_iface_is_an_alias_of_interface() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }
    for flag in ["--iface", "--interface"] {
        let cli = <Cli as clap::Parser>::try_parse_from(["synwall", flag, "eth1"]).unwrap();
        assert_eq!(cli.settings.interface.as_deref(), Some("eth1"));
    }
}

#[test]
fn test_unknown_key_is_named() {
    let error = parse("interface = \"eth0\"\nmax-syn-backlogg = 5\n").unwrap_err();
    assert!(error.contains("max-syn-backlogg"), "{error}");
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn test_flags_override_the_file() {
    let file = Settings {
        max_syn_backlog: Some(10),
        backlog: Some(20),
        ..minimal()
    };
    let flags = Settings {
        max_syn_backlog: Some(30),
        ..Settings::default()
    };
    let merged = flags.over(file);
    assert_eq!(merged.max_syn_backlog, Some(30));
    assert_eq!(merged.backlog, Some(20));
    let resolved = merged.resolve(Lookup::FormOnly).unwrap();
    assert_eq!(resolved.server.listener.max_syn_backlog, 30);
    assert_eq!(resolved.server.backlog, 20);
}

#[test]
fn test_invalid_settings_name_their_key() {
    let cases: Vec<(Settings, &str)> = vec![
        (
            Settings {
                interface: None,
                ..minimal()
            },
            "interface: required",
        ),
        (
            Settings {
                upstream: None,
                handoff: Some(HandoffMode::Repair),
                ..minimal()
            },
            "upstream: required in repair mode (handoff = repair)",
        ),
        (
            Settings {
                proxy_threads: Some(0),
                ..minimal()
            },
            "proxy-threads: must be at least 1",
        ),
        (
            Settings {
                window_scale: Some(15),
                ..minimal()
            },
            "window-scale: 15",
        ),
        (
            Settings {
                mss_v4: Some(20),
                ..minimal()
            },
            "mss-v4: 20",
        ),
        (
            Settings {
                cookie_mss_v6: Some(vec![1, 2]),
                ..minimal()
            },
            "cookie-mss-v6: needs exactly 4",
        ),
        (
            Settings {
                cookie_mss_v4: Some(vec![4, 3, 2, 1]),
                ..minimal()
            },
            "cookie-mss-v4: [4, 3, 2, 1]",
        ),
        (
            Settings {
                workers: Some(0),
                ..minimal()
            },
            "workers: must be at least 1",
        ),
        (
            Settings {
                upstream: Some("nowhere".into()),
                ..minimal()
            },
            "upstream: \"nowhere\"",
        ),
        (
            Settings {
                key_rotation: Some(Duration::from_millis(10)),
                ..minimal()
            },
            "key-rotation",
        ),
        (
            Settings {
                secret_file: Some("/nonexistent/secret".into()),
                ..minimal()
            },
            "secret-file: ",
        ),
    ];
    for (settings, expected) in cases {
        let error = settings.resolve(Lookup::FormOnly).unwrap_err().to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
}

#[test]
fn test_native_mode_needs_no_upstream() {
    let native = Settings {
        upstream: None,
        handoff: Some(HandoffMode::Native),
        ..minimal()
    };
    let resolved = native.resolve(Lookup::FormOnly).unwrap();
    assert!(resolved.proxy.is_none());
    let error = resolved
        .repair_proxy("handoff = auto, but ...")
        .unwrap_err();
    assert!(error.to_string().contains("handoff = auto, but"), "{error}");
    let with_upstream = minimal().resolve(Lookup::FormOnly).unwrap();
    assert_eq!(
        with_upstream.proxy.unwrap().proxy_protocol,
        synwall::proxy::ProxyProtocol::Off
    );
}

#[test]
fn test_a_pure_check_looks_no_name_up() {
    let named = Settings {
        upstream: Some("upstream.invalid:8080".into()),
        ..minimal()
    };
    // `.invalid` never resolves (RFC 6761): only a lookup could fail on it.
    let resolved = named.resolve(Lookup::FormOnly).expect("the form is right");
    assert_eq!(
        resolved.proxy.as_ref().unwrap().upstream,
        Upstream::Tcp("0.0.0.0:8080".parse().unwrap())
    );
    let effective = named.effective(&resolved);
    assert_eq!(effective.upstream.as_deref(), Some("upstream.invalid:8080"));
    let error = named.resolve(Lookup::Dns).unwrap_err().to_string();
    assert!(
        error.starts_with("upstream: \"upstream.invalid:8080\""),
        "{error}"
    );
    for malformed in ["upstream.invalid", ":8080", "upstream.invalid:http"] {
        let error = upstream_error(malformed);
        assert!(error.contains("expected HOST:PORT"), "{malformed}: {error}");
    }
}

/// Why `upstream` is refused, by form alone.
fn upstream_error(upstream: &str) -> String {
    let settings = Settings {
        upstream: Some(upstream.into()),
        ..minimal()
    };
    settings.resolve(Lookup::FormOnly).unwrap_err().to_string()
}

#[test]
fn test_a_unix_upstream_is_an_absolute_path() {
    let unix = Settings {
        upstream: Some("unix:/run/app/proxy.sock".into()),
        ..minimal()
    };
    let resolved = unix.resolve(Lookup::Dns).expect("no lookup for a path");
    let upstream = resolved.proxy.as_ref().unwrap().upstream.clone();
    assert_eq!(upstream, Upstream::unix("/run/app/proxy.sock"));
    assert_eq!(upstream.to_string(), "unix:/run/app/proxy.sock");
    let effective = unix.effective(&resolved);
    assert_eq!(
        effective.upstream.as_deref(),
        Some("unix:/run/app/proxy.sock")
    );
    for malformed in ["unix:proxy.sock", "unix:"] {
        let error = upstream_error(malformed);
        assert!(
            error.starts_with(&format!("upstream: {malformed:?}: expected unix:/PATH")),
            "{malformed}: {error}"
        );
    }
}

#[test]
fn test_reload_tells_what_takes_a_restart() {
    let old = minimal();
    let new = Settings {
        syncookies: Some(Syncookies::Always),
        upstream: Some("127.0.0.1:9090".into()),
        proxy_protocol: Some(ProxyProtocol::V2),
        max_syn_backlog: Some(8),
        interface: Some("eth1".into()),
        handoff: Some(HandoffMode::Repair),
        ..minimal()
    };
    assert_eq!(
        old.restart_needed(&new),
        ["handoff", "interface", "max-syn-backlog"]
    );
    let running = old.with_reloadable_from(&new);
    assert_eq!(running.syncookies, Some(Syncookies::Always));
    assert_eq!(running.upstream.as_deref(), Some("127.0.0.1:9090"));
    assert_eq!(running.proxy_protocol, Some(ProxyProtocol::V2));
    assert_eq!(running.max_syn_backlog, None, "kept until a restart");
    assert_eq!(running.interface.as_deref(), Some("lo"));
    assert!(running.restart_needed(&new).len() == 3);
}

#[test]
fn test_effective_settings_are_a_configuration_that_runs_the_same() {
    let given = Settings {
        max_syn_backlog: Some(512),
        proxy_protocol: Some(ProxyProtocol::V1),
        ..minimal()
    };
    let resolved = given.resolve(Lookup::FormOnly).unwrap();
    let effective = given.effective(&resolved);
    let text = effective.to_toml();
    assert!(text.contains("syncookies = \"when-full\""), "{text}");
    assert!(text.contains("max-syn-backlog = 512"), "{text}");
    assert!(text.contains("proxy-protocol = \"v1\""), "{text}");
    assert!(text.contains("upstream-timeout = \"3s\""), "{text}");
    assert!(!text.contains("WhenFull"), "{text}");
    let reread: Settings = toml::from_str(&text).unwrap();
    assert_eq!(reread, effective);
    // Every key but the secret file (none given) is there, defaults included, spelt as
    // its flag.
    let flags = <Settings as clap::Args>::augment_args(clap::Command::new("synwall"));
    let mut flags: Vec<&str> = flags
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|&flag| flag != "secret-file")
        .collect();
    let table = effective.as_table();
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    flags.sort_unstable();
    keys.sort_unstable();
    assert_eq!(keys, flags);
    assert_eq!(
        reread.effective(&reread.resolve(Lookup::FormOnly).unwrap()),
        effective
    );
}

#[test]
fn test_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/synwall.toml");
    let example = Settings::load(Path::new(path)).expect("deploy/synwall.toml parses");
    assert!(
        example.secret_file.is_some(),
        "the example shows the secret file"
    );
    // Everything but the secret, which exists only on a deployed host.
    let resolved = Settings {
        secret_file: None,
        ..example
    }
    .resolve(Lookup::FormOnly)
    .expect("every value of the example is valid");
    assert_eq!(resolved.server.listener.max_syn_backlog, 4096);
    assert_eq!(
        resolved.metrics,
        synwall::metrics::DEFAULT_ENDPOINT.parse().unwrap()
    );
}

/// Every setting at its default, as the configuration file spells it (the required keys and
/// the upstream from [`minimal`]).
fn defaults() -> toml::Table {
    let settings = minimal();
    settings
        .effective(&settings.resolve(Lookup::FormOnly).unwrap())
        .as_table()
}

/// Keys whose default is a description, not a value: every rx queue, no CPUs, what the kernel
/// offers, a random secret.
const DESCRIBED_DEFAULTS: [&str; 4] = ["queues", "cpus", "window-scale", "secret-file"];
/// Keys of deploy/synwall.toml that hold an example, not a default.
const EXAMPLES: [&str; 4] = ["interface", "listen", "upstream", "secret-file"];

/// Whether two spellings say the same: durations compare as durations ("64s" is "1m 4s").
fn same(stated: &str, in_force: &str) -> bool {
    match (
        humantime::parse_duration(stated),
        humantime::parse_duration(in_force),
    ) {
        (Ok(stated), Ok(in_force)) => stated == in_force,
        _ => stated == in_force,
    }
}

/// A value as a flag's help states it.
fn as_help(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items.iter().map(as_help).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[test]
fn test_flag_help_states_the_defaults_in_force() {
    let defaults = defaults();
    let command = <Settings as clap::Args>::augment_args(clap::Command::new("synwall"));
    let mut checked = 0;
    for arg in command.get_arguments() {
        let key = arg.get_long().unwrap();
        let help = arg.get_help().unwrap().to_string();
        let Some((_, stated)) = help.rsplit_once("[default: ") else {
            continue;
        };
        let stated = stated.trim_end_matches(['.', ']']);
        if DESCRIBED_DEFAULTS.contains(&key) {
            continue;
        }
        let in_force = as_help(&defaults[key]);
        // "auto: native, else generic" states the value, then what it means.
        let value = stated.split_once(": ").map_or(stated, |(value, _)| value);
        assert!(
            same(value, &in_force),
            "--{key}: {help}; in force: {in_force}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} flags state their default");
}

#[test]
fn test_deploy_file_states_the_defaults_and_which_keys_reload() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/synwall.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let defaults = defaults();
    let file: toml::Table = toml::from_str(&text).unwrap();
    for (key, value) in &file {
        if !EXAMPLES.contains(&key.as_str()) {
            let in_force = &defaults[key];
            assert!(
                same(&as_help(value), &as_help(in_force)),
                "{key} in deploy/synwall.toml: {value}; in force: {in_force}"
            );
        }
    }
    // Every key is there, set or commented out, and its comment says [reload] exactly when a
    // SIGHUP applies it.
    let mut comment = String::new();
    let mut seen = Vec::new();
    for line in text.lines() {
        let setting = line.trim_start_matches("# ");
        match setting.split_once(" = ") {
            Some((key, _)) if change_of(key).is_some() => {
                let reloads = change_of(key) == Some(Change::Reload);
                assert_eq!(comment.contains("[reload"), reloads, "{key}: {comment}");
                seen.push(key.to_owned());
            }
            _ if line.starts_with('#') => comment.push_str(line),
            _ => comment.clear(),
        }
    }
    let mut keys = all_keys();
    seen.sort();
    keys.sort();
    assert_eq!(seen, keys);
}

/// Every key, in the file's spelling.
fn all_keys() -> Vec<String> {
    KEYS.iter()
        .map(|(field, _)| field.replace('_', "-"))
        .collect()
}

#[test]
fn test_reloadable_keys_are_those_a_reload_takes() {
    let old = minimal();
    let given = old.as_table();
    let (mut reloaded, mut expected) = (Vec::new(), reloadable_keys());
    let defaults = defaults();
    for key in all_keys() {
        let Some(default) = defaults.get(&key).filter(|_| !given.contains_key(&key)) else {
            // Set in both, or with no default value (the secret file): a change of value
            // would be needed to tell.
            expected.retain(|reloadable| *reloadable != key);
            continue;
        };
        // A file where only `key` changed (from unset to its default): the reload takes the
        // new value, or keeps the running one.
        let mut changed = given.clone();
        changed.insert(key.clone(), default.clone());
        let new: Settings = changed.try_into().unwrap();
        if old.with_reloadable_from(&new) == new {
            reloaded.push(key);
        }
    }
    assert_eq!(reloaded, expected);
}

/// The keys a SIGHUP applies, in the file's spelling.
fn reloadable_keys() -> Vec<String> {
    KEYS.iter()
        .filter(|(_, change)| *change == Change::Reload)
        .map(|(field, _)| field.replace('_', "-"))
        .collect()
}
