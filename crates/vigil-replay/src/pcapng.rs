//! A capture as pcapng, for Wireshark and tshark: the session's bytes as one TCP connection
//! between a client (10.0.0.1) and PostgreSQL's port on the server (10.0.0.2:5432), so that the
//! PostgreSQL dissector decodes every message. The capture begins after authentication, so a
//! StartupMessage (user = the identity, database = the connection) is synthesised in front;
//! everything else is the recorded bytes, at their recorded times.

use crate::file::Capture;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const CLIENT_PORT: u16 = 50_432;
const SERVER_PORT: u16 = 5432;
/// Payload per TCP segment (IPv4 packets are at most 64 KiB).
const MSS: usize = 32 * 1024;
/// LINKTYPE_RAW: packets begin with the IP header.
const LINKTYPE_RAW: u16 = 101;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

/// The pcapng file of a capture.
pub fn export(capture: &Capture) -> Vec<u8> {
    let mut out = Vec::new();
    section_header(&mut out);
    interface_description(&mut out);
    let start_us = capture.header.session.started_at.as_micros().max(0) as u64;
    let mut tcp = Tcp {
        client_seq: 1_000,
        server_seq: 5_000,
    };
    let at = |t: u64| start_us.saturating_add(t);
    // Handshake and the synthesised StartupMessage.
    tcp.packet(&mut out, at(0), true, SYN, &[]);
    tcp.packet(&mut out, at(0), false, SYN | ACK, &[]);
    tcp.packet(&mut out, at(0), true, ACK, &[]);
    let startup = startup_message(
        &capture.header.session.identity,
        &capture.header.session.connection,
    );
    tcp.packet(&mut out, at(0), true, PSH | ACK, &startup);
    for frame in &capture.frames {
        for chunk in frame.bytes.chunks(MSS) {
            tcp.packet(
                &mut out,
                at(frame.t_us),
                frame.from_client,
                PSH | ACK,
                chunk,
            );
        }
    }
    let end = capture.frames.last().map_or(0, |f| f.t_us);
    tcp.packet(&mut out, at(end), true, FIN | ACK, &[]);
    tcp.packet(&mut out, at(end), false, FIN | ACK, &[]);
    tcp.packet(&mut out, at(end), true, ACK, &[]);
    out
}

fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

struct Tcp {
    client_seq: u32,
    server_seq: u32,
}

impl Tcp {
    fn packet(&mut self, out: &mut Vec<u8>, t_us: u64, from_client: bool, flags: u8, data: &[u8]) {
        let (src, dst, sport, dport) = if from_client {
            (CLIENT, SERVER, CLIENT_PORT, SERVER_PORT)
        } else {
            (SERVER, CLIENT, SERVER_PORT, CLIENT_PORT)
        };
        let (seq, ack) = if from_client {
            (self.client_seq, self.server_seq)
        } else {
            (self.server_seq, self.client_seq)
        };
        let advance = data.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        if from_client {
            self.client_seq = self.client_seq.wrapping_add(advance);
        } else {
            self.server_seq = self.server_seq.wrapping_add(advance);
        }
        let mut tcp = Vec::with_capacity(20 + data.len());
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
        tcp.push(5 << 4); // header length: 5 words
        tcp.push(flags);
        tcp.extend_from_slice(&65_535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(data);
        let sum = checksum_with_pseudo_header(src, dst, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());

        let total = 20 + tcp.len();
        let mut ip = Vec::with_capacity(total);
        ip.push(0x45);
        ip.push(0);
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0]); // id, don't fragment
        ip.push(64); // TTL
        ip.push(6); // TCP
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let sum = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&tcp);
        enhanced_packet(out, t_us, &ip);
    }
}

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn checksum_with_pseudo_header(src: [u8; 4], dst: [u8; 4], segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.push(0);
    pseudo.push(6);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    let mut sum = 0u32;
    for pair in pseudo.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    checksum(segment, sum)
}

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend_from_slice(&total.to_le_bytes());
}

fn section_header(out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
    block(out, 0x0A0D_0D0A, &body);
}

fn interface_description(out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // no snap length
                                                 // Timestamps in microseconds is the default (if_tsresol absent).
    block(out, 1, &body);
}

fn enhanced_packet(out: &mut Vec<u8>, t_us: u64, packet: &[u8]) {
    let mut body = Vec::with_capacity(20 + packet.len());
    body.extend_from_slice(&0u32.to_le_bytes()); // interface 0
    body.extend_from_slice(&((t_us >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(t_us as u32).to_le_bytes());
    body.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    body.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    body.extend_from_slice(packet);
    block(out, 6, &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        // A header whose checksum is filled in sums to 0xffff (checksum 0 when recomputed).
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let sum = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&ip, 0), 0);
    }

    #[test]
    fn blocks_are_padded_and_framed() {
        let mut out = Vec::new();
        block(&mut out, 6, &[1, 2, 3]);
        assert_eq!(out.len(), 16);
        assert_eq!(&out[4..8], &16u32.to_le_bytes());
        assert_eq!(&out[12..16], &16u32.to_le_bytes());
    }
}
