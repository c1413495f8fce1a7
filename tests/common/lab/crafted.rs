//! Handshakes the test crafts itself, over AF_PACKET from the client namespace
//! ([`CraftedClient`]), against synwall and against the kernel's own listener on
//! [`KERNEL_PORT`], and what each side's kernel socket negotiated ([`negotiate`]).

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use loadgen::lab::{CLIENT_V4, CLIENT_V6, Topology};
use synwall::device::FrameIo;
use synwall::sys::tcp_info::{TcpInfo, tcp_info};
use synwall::wire::TcpOptions;

use super::{in_ns, served_v4, served_v6};

/// A TCP client of the test's own making in the lab's client namespace, over AF_PACKET: its
/// SYN carries exactly the options the test chooses, from a source address in the spoofed
/// ranges (routed through the client namespace, whose kernel owns no such address and so
/// never answers the server's segments itself).
pub struct CraftedClient {
    socket: synwall::sys::PacketSocket,
    link: synwall::wire::LinkAddrs,
}

impl CraftedClient {
    /// The link addresses of frames from the client to the server.
    pub fn link(topology: &Topology) -> synwall::wire::LinkAddrs {
        synwall::wire::LinkAddrs {
            src: topology
                .mac(&topology.client_ns, &topology.client_if)
                .unwrap(),
            dst: topology
                .mac(&topology.server_ns, &topology.server_if)
                .unwrap(),
            vlan: None,
        }
    }

    /// Opens a packet socket on the client interface `ifname`, sending with `link` (see
    /// [`CraftedClient::link`]); run it on a thread in the client namespace.
    pub fn open(ifname: &str, link: synwall::wire::LinkAddrs) -> CraftedClient {
        let config = synwall::sys::PacketSocketConfig {
            receive: true,
            ..Default::default()
        };
        CraftedClient {
            socket: synwall::sys::PacketSocket::open(ifname, config).unwrap(),
            link,
        }
    }

    /// Sends `client`'s SYN to `server`, waits for the SYN-ACK and answers it with the final
    /// ACK carrying `payload`. Returns the SYN-ACK.
    pub fn handshake(
        &mut self,
        client: &crate::common::Client,
        server: SocketAddr,
        payload: &[u8],
    ) -> synwall::wire::TcpRepr<'static> {
        let client = crate::common::Client {
            link: self.link,
            server,
            ..*client
        };
        self.send(&client.syn());
        let syn_ack = self.receive(&client);
        // A real stack's receive window: 64 KiB, scaled when both sides scale.
        let window = if syn_ack.options.window_scale.is_some() {
            502
        } else {
            64240
        };
        self.send(&synwall::wire::TcpRepr {
            window,
            ..client.ack(&syn_ack, payload)
        });
        syn_ack
    }

    /// Sends `client`'s SYN to `server`, with the 802.1Q tag of `client.link` if it has one;
    /// returns the answer to it within `wait`, if any.
    pub fn syn(
        &mut self,
        client: &crate::common::Client,
        server: SocketAddr,
        wait: Duration,
    ) -> Option<synwall::wire::TcpRepr<'static>> {
        let client = crate::common::Client {
            link: synwall::wire::LinkAddrs {
                vlan: client.link.vlan,
                ..self.link
            },
            server,
            ..*client
        };
        self.send(&client.syn());
        self.answer(&client, wait)
    }

    fn send(&mut self, repr: &synwall::wire::TcpRepr<'_>) {
        let mut frame = vec![0; synwall::wire::emitted_len(repr)];
        synwall::wire::emit(repr, &mut frame).unwrap();
        self.send_frame(&frame);
    }

    /// Sends a frame the test made itself.
    pub fn send_frame(&mut self, frame: &[u8]) {
        let sent = self
            .socket
            .transmit(1, |tx| {
                tx[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            })
            .unwrap();
        assert_eq!(sent, 1, "the frame was sent");
        self.socket.flush().unwrap();
    }

    /// `client`'s SYN to `server` as a frame, from this client's link addresses.
    pub fn syn_frame(&self, client: &crate::common::Client, server: SocketAddr) -> Vec<u8> {
        let client = crate::common::Client {
            link: self.link,
            server,
            ..*client
        };
        crate::common::frame(&client.syn())
    }

    /// The next segment from the server to `client`, within 5 s.
    fn receive(&mut self, client: &crate::common::Client) -> synwall::wire::TcpRepr<'static> {
        self.answer(client, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to {client:?}"))
    }

    /// The next segment from the server to `client` within `wait`, if any.
    pub fn answer(
        &mut self,
        client: &crate::common::Client,
        wait: Duration,
    ) -> Option<synwall::wire::TcpRepr<'static>> {
        let deadline = Instant::now() + wait;
        let to_client = synwall::wire::Endpoints::new([client.addr]);
        let mut reply = None;
        while reply.is_none() && Instant::now() < deadline {
            self.socket.wait(Duration::from_millis(50)).unwrap();
            self.socket
                .receive(64, |rx, _| {
                    if let synwall::wire::Parsed::Ours(repr) = synwall::wire::parse(rx, &to_client)
                        && repr.src == client.server
                        && reply.is_none()
                    {
                        reply = Some(crate::common::detach(repr));
                    }
                    None
                })
                .unwrap();
        }
        reply
    }
}

/// A port the kernel's own listener serves, for comparison.
pub const KERNEL_PORT: u16 = 81;

/// A listening socket at `address` in the server namespace whose accept gives up after 10 s.
pub fn service(topology: &Topology, address: SocketAddr) -> TcpListener {
    in_ns(topology, &topology.server_ns, move || {
        let listener = TcpListener::bind(address).unwrap();
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        listener
    })
}

/// The served address and the client's own address of `family` (4 or 6).
pub fn addresses(family: u8) -> (SocketAddr, IpAddr) {
    match family {
        4 => (served_v4(), CLIENT_V4.into()),
        _ => (served_v6(), CLIENT_V6.into()),
    }
}

/// Makes the server's kernel send complete TCP checksums, which the crafted client checks.
pub fn full_checksums_from_the_server(topology: &Topology) {
    topology
        .run_in(
            &topology.server_ns,
            &["ethtool", "-K", &topology.server_if, "tx", "off"],
        )
        .unwrap();
}

/// A crafted client of `family` with source port `port`, from the spoofed ranges.
pub fn crafted(family: u8, port: u16, isn: u32, options: TcpOptions) -> crate::common::Client {
    let address = match family {
        4 => format!("198.18.200.1:{port}"),
        _ => format!("[2001:2:0:8000::1]:{port}"),
    };
    crate::common::Client::new(&address, isn, options)
}

/// What the kernel socket of one crafted handshake negotiated: through synwall to the service
/// on port 80, and straight to the kernel's own listener on [`KERNEL_PORT`].
pub struct Negotiated {
    pub synwall: TcpInfo,
    pub kernel: TcpInfo,
}

/// Runs the handshake of a client with `options` against both listeners of `family` and reads
/// each accepted socket's TCP_INFO, after checking that the final ACK's data arrived.
pub fn negotiate(
    topology: &Topology,
    accept_synwall: &dyn Fn() -> TcpStream,
    kernel: &TcpListener,
    family: u8,
    attempt: u16,
    options: TcpOptions,
) -> Negotiated {
    let (served, _) = addresses(family);
    let kernel_address = SocketAddr::new(served.ip(), KERNEL_PORT);
    let isn = 0xfff0_0000 + u32::from(attempt) * 1000;
    let (to_synwall, to_kernel) = (
        crafted(family, 40000 + attempt, isn, options),
        crafted(family, 50000 + attempt, isn, options),
    );
    let (ifname, link) = (topology.client_if.clone(), CraftedClient::link(topology));
    in_ns(topology, &topology.client_ns, move || {
        let mut client = CraftedClient::open(&ifname, link);
        client.handshake(&to_synwall, served, b"early");
        client.handshake(&to_kernel, kernel_address, b"early");
    });
    let mut infos = Vec::new();
    for mut stream in [accept_synwall(), kernel.accept().unwrap().0] {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut early = [0u8; 5];
        stream.read_exact(&mut early).expect("the final ACK's data");
        assert_eq!(&early, b"early");
        infos.push(tcp_info(&stream).unwrap());
    }
    Negotiated {
        synwall: infos[0],
        kernel: infos[1],
    }
}

/// The SYN layouts of real stacks, and none at all.
pub fn syn_layouts() -> [(&'static str, TcpOptions); 4] {
    [
        ("linux", crate::common::linux_options(1)),
        ("windows", crate::common::windows_options()),
        ("macos", crate::common::macos_options(1)),
        ("no options", TcpOptions::default()),
    ]
}
