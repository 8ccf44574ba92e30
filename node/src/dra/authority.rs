//! A front for the plugin registration socket.
//!
//! The kubelet's plugin watcher dials a registration socket by its bare
//! path, and its gRPC client then sends that path as the request's HTTP/2
//! `:authority`, percent-encoded
//! (`%2Fvar%2Flib%2Fkubelet%2Fplugins_registry%2F<driver>-reg.sock`). That is
//! not an authority, so the HTTP/2 server under tonic resets the stream with
//! PROTOCOL_ERROR and the plugin never registers. (The DRA service itself is
//! dialled as `unix:<path>`, with `localhost`.)
//!
//! This front reads the client's frames, decodes every request header block
//! (HPACK, with the connection's table), puts `localhost` where the
//! authority is not one, and encodes the block again for the server with
//! a table of its own; every other frame, and everything the server sends,
//! passes through unchanged.

use std::io;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The client connection preface (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE unless it says more (the initial value).
const MAX_FRAME: usize = 16_384;
/// A frame larger than this is not read (the server would refuse it).
const MAX_READ: usize = 1 << 20;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The authority a request carries, or `localhost` in place of one the
/// server would refuse.
fn fix_authority(v: Vec<u8>) -> Vec<u8> {
    if tonic::codegen::http::uri::Authority::try_from(&v[..]).is_ok() {
        v
    } else {
        b"localhost".to_vec()
    }
}

/// One frame header: length, type, flags, stream.
fn frame_head(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let l = (len as u32).to_be_bytes();
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// The header block fragment of a HEADERS frame's payload (padding and
/// priority taken off).
fn fragment(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or_else(|| bad("HEADERS: no pad length"))?;
        pad = usize::from(n);
        p = rest;
    }
    if flags & PRIORITY != 0 {
        p = p.get(5..).ok_or_else(|| bad("HEADERS: short priority"))?;
    }
    p.get(
        ..p.len()
            .checked_sub(pad)
            .ok_or_else(|| bad("HEADERS: padding too long"))?,
    )
    .ok_or_else(|| bad("HEADERS: padding too long"))
}

/// Writes one rewritten header block as HEADERS (and CONTINUATION) frames.
async fn write_block<W: AsyncWrite + Unpin>(
    to: &mut W,
    dec: &mut Decoder<'_>,
    enc: &mut Encoder<'_>,
    stream: u32,
    end_stream: bool,
    block: &[u8],
) -> io::Result<()> {
    let headers = dec
        .decode(block)
        .map_err(|e| bad(format!("HPACK: {e:?}")))?;
    let headers: Vec<(Vec<u8>, Vec<u8>)> = headers
        .into_iter()
        .map(|(n, v)| {
            if n == b":authority" {
                (n, fix_authority(v))
            } else {
                (n, v)
            }
        })
        .collect();
    let out = enc.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
    let chunks: Vec<&[u8]> = if out.is_empty() {
        vec![&[][..]]
    } else {
        out.chunks(MAX_FRAME).collect()
    };
    let last = chunks.len() - 1;
    for (i, c) in chunks.iter().enumerate() {
        let (kind, mut flags) = if i == 0 {
            (HEADERS, if end_stream { END_STREAM } else { 0 })
        } else {
            (CONTINUATION, 0)
        };
        if i == last {
            flags |= END_HEADERS;
        }
        to.write_all(&frame_head(c.len(), kind, flags, stream))
            .await?;
        to.write_all(c).await?;
    }
    Ok(())
}

/// Copies a client's HTTP/2 connection from `from` to `to`, rewriting the
/// request header blocks as the module says. Ends at the client's EOF.
pub async fn rewrite_requests<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(bad("not an HTTP/2 connection preface"));
    }
    to.write_all(&preface).await?;
    let mut dec = Decoder::new();
    let mut enc = Encoder::new();
    // A header block waiting for its CONTINUATION frames.
    let mut pending: Option<(u32, bool, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_READ {
            return Err(bad(format!("a frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match (kind, pending.take()) {
            (HEADERS, None) => {
                let frag = fragment(flags, &payload)?.to_vec();
                let end_stream = flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    write_block(&mut to, &mut dec, &mut enc, stream, end_stream, &frag).await?;
                } else {
                    pending = Some((stream, end_stream, frag));
                }
            }
            (CONTINUATION, Some((s, end_stream, mut block))) if s == stream => {
                block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    write_block(&mut to, &mut dec, &mut enc, s, end_stream, &block).await?;
                } else {
                    pending = Some((s, end_stream, block));
                }
            }
            (HEADERS | CONTINUATION, _) | (_, Some(_)) => {
                return Err(bad("a header block interrupted (RFC 9113, section 4.3)"))
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
            }
        }
        to.flush().await?;
    }
    to.shutdown().await
}

/// Serves one client connection `conn` through the front to `server` (one
/// end of a pipe whose other end the gRPC server holds).
pub async fn front<C, S>(conn: C, server: S)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, mut cw) = tokio::io::split(conn);
    let (mut sr, sw) = tokio::io::split(server);
    let up = rewrite_requests(cr, sw);
    let down = async {
        let r = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
        r
    };
    let _ = tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame (with a priority and padding, split over a
    /// CONTINUATION) carrying a path authority comes out as one block with
    /// `localhost`, decodable by a fresh decoder; other frames pass.
    #[tokio::test(flavor = "current_thread")]
    async fn a_path_authority_becomes_localhost_and_the_rest_passes() {
        let mut enc = Encoder::new();
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/pluginregistration.Registration/GetInfo"),
            (
                b":authority",
                b"%2Fvar%2Flib%2Fkubelet%2Fplugins_registry%2Fx-reg.sock",
            ),
            (b"content-type", b"application/grpc"),
        ]);
        let (a, b) = block.split_at(10);
        let mut input = PREFACE.to_vec();
        let mut payload = vec![2u8]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0]); // padding
        input.extend_from_slice(&frame_head(payload.len(), HEADERS, PADDED | PRIORITY, 1));
        input.extend_from_slice(&payload);
        input.extend_from_slice(&frame_head(b.len(), CONTINUATION, END_HEADERS, 1));
        input.extend_from_slice(b);
        input.extend_from_slice(&frame_head(3, 0x0, END_STREAM, 1));
        input.extend_from_slice(b"abc");
        let mut out = Vec::new();
        rewrite_requests(&input[..], &mut out).await.unwrap();
        assert_eq!(&out[..24], PREFACE);
        let h = &out[24..33];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        assert_eq!((h[3], h[4]), (HEADERS, END_HEADERS));
        let got = Decoder::new().decode(&out[33..33 + len]).unwrap();
        let authority: Vec<&[u8]> = got
            .iter()
            .filter(|(n, _)| n == b":authority")
            .map(|(_, v)| &v[..])
            .collect();
        assert_eq!(authority, vec![&b"localhost"[..]]);
        assert_eq!(got.len(), 4);
        assert_eq!(
            &out[33 + len..],
            &[&frame_head(3, 0, END_STREAM, 1)[..], b"abc"].concat()[..]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_host_authority_is_kept_and_garbage_is_refused() {
        let mut enc = Encoder::new();
        let block = enc.encode([(&b":authority"[..], &b"localhost:1234"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame_head(
            block.len(),
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
        ));
        input.extend_from_slice(&block);
        let mut out = Vec::new();
        rewrite_requests(&input[..], &mut out).await.unwrap();
        assert_eq!(out[24 + 4], END_HEADERS | END_STREAM);
        let got = Decoder::new().decode(&out[33..]).unwrap();
        assert_eq!(
            got,
            vec![(b":authority".to_vec(), b"localhost:1234".to_vec())]
        );
        assert!(
            rewrite_requests(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], Vec::new())
                .await
                .is_err()
        );
        // A CONTINUATION with no HEADERS before it.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame_head(0, CONTINUATION, END_HEADERS, 1));
        assert!(rewrite_requests(&input[..], Vec::new()).await.is_err());
    }
}
