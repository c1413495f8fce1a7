//! How the library's modes are spelled in flags and files (`when-full`, `native`, `v2`): the
//! library's enums know no clap and no serde; each spelling here converts both ways, variant
//! for variant.

use serde::{Deserialize, Serialize};

/// Declares a spelling of the library enum `$lib`, with the same variants, and the conversions
/// both ways. The variants' docs are what `--help` shows for each value.
macro_rules! spelling {
    ($(#[$doc:meta])* $name:ident = $lib:path {
        $($(#[$variant_doc:meta])* $variant:ident,)+
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$variant_doc])* $variant,)+
        }

        impl From<$name> for $lib {
            fn from(spelled: $name) -> Self {
                use $lib as Lib;
                match spelled {
                    $($name::$variant => Lib::$variant,)+
                }
            }
        }

        impl From<$lib> for $name {
            fn from(mode: $lib) -> Self {
                use $lib as Lib;
                match mode {
                    $(Lib::$variant => $name::$variant,)+
                }
            }
        }
    };
}

spelling! {
    /// [`synwall::listener::SyncookiesMode`]: `never`, `when-full`, `always`.
    Syncookies = synwall::listener::SyncookiesMode {
        /// tcp_syncookies=0: every SYN needs a SYN-queue entry.
        Never,
        /// tcp_syncookies=1: cookies when the SYN queue is full.
        WhenFull,
        /// tcp_syncookies=2: cookies for every SYN.
        Always,
    }
}

spelling! {
    /// [`synwall::sys::XdpMode`]: `auto`, `native`, `generic`.
    XdpMode = synwall::sys::XdpMode {
        /// Native (driver) mode if the driver supports it, generic (SKB) mode otherwise.
        Auto,
        /// Native (driver, DRV) mode only.
        Native,
        /// Generic (SKB) mode only.
        Generic,
    }
}

spelling! {
    /// [`synwall::handoff::HandoffMode`]: `auto`, `native`, `repair`.
    HandoffMode = synwall::handoff::HandoffMode {
        /// Native where the kernel offers it (Linux 6.9+), repair otherwise.
        Auto,
        /// Into the service's own listening socket on the served port.
        Native,
        /// Sockets built with TCP_REPAIR, given to the application or proxied to the upstream.
        Repair,
    }
}

spelling! {
    /// [`synwall::sys::SynAnswerer`]: `kernel-first`, `synwall`.
    SynAnswerer = synwall::sys::SynAnswerer {
        /// The kernel's listener (the service's in native mode, synwall's own in repair mode)
        /// while its SYN queue has room; synwall from the moment it fills, for at least 10 s.
        KernelFirst,
        /// synwall, every SYN.
        Synwall,
    }
}

spelling! {
    /// [`synwall::proxy::ProxyProtocol`]: `off`, `v1`, `v2`.
    ProxyProtocol = synwall::proxy::ProxyProtocol {
        /// No header: the upstream sees the client's bytes only.
        Off,
        /// The text header, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`).
        V1,
        /// The binary header: signature, PROXY command, TCP over IPv4 or IPv6, addresses, ports.
        V2,
    }
}
