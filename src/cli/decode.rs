//! `jkmon decode`: hex in, decoded frames out. Every problem is reported with the byte offset
//! where it starts; the exit code is non-zero when anything was rejected or nothing was found.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::DecodeArgs;
use crate::protocol::{Assembler, AssemblerConfig, Item, StreamDecoder};
use crate::report::{json, text};

/// Parses hex text: whitespace, commas, colons and `0x` prefixes separate or decorate bytes.
/// An error names the bad token and where it is.
pub fn parse_hex(input: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(input.len() / 2);
    let tokens = input.split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == ';');
    for (n, token) in tokens.filter(|t| !t.is_empty()).enumerate() {
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        let bytes = hex::decode(digits).map_err(|_| {
            let shown: String = token.chars().take(24).collect();
            format!(
                "\"{shown}\" (item {} of the input) is not hex bytes; expected pairs of hex digits like \"55 AA EB 90\" or \"55aaeb90\"",
                n + 1
            )
        })?;
        out.extend(bytes);
    }
    Ok(out)
}

pub fn run(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let input = if args.hex.is_empty() || args.hex == ["-"] {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("could not read hex from standard input")?;
        s
    } else {
        args.hex.join(" ")
    };
    let bytes = parse_hex(&input).map_err(anyhow::Error::msg)?;
    if bytes.is_empty() {
        bail!("no hex bytes given: pass them as arguments or on standard input (e.g. `jkmon decode 55aaeb90…`)");
    }

    let mut assembler = Assembler::new(AssemblerConfig::any());
    let mut decoder = StreamDecoder::new(args.variant);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut decoded_count, mut failures) = (0usize, 0usize);
    let mut handle = |item: Item, out: &mut dyn Write| -> anyhow::Result<()> {
        let (offset, address) = match &item {
            Item::Frame { frame, offset } => (*offset, frame.rs485_address),
            Item::SerialFrame { offset, .. }
            | Item::Command { offset, .. }
            | Item::Rs485Request { offset, .. }
            | Item::Rs485Tail { offset, .. }
            | Item::Rs485Switch { offset, .. }
            | Item::Rejected { offset, .. } => (*offset, None),
        };
        match decoder.decode(&item) {
            Ok(decoded) => {
                decoded_count += 1;
                if args.json {
                    for v in json::values(&decoded, address) {
                        writeln!(out, "{v}")?;
                    }
                } else {
                    writeln!(out, "@{offset}: {}", text::decoded(&decoded, address))?;
                }
            }
            Err(e) => {
                failures += 1;
                super::logging::error_line(format_args!("frame at byte {offset}: {e}"));
            }
        }
        Ok(())
    };
    // Feed in pieces, as a transport would: the assembler's buffer stays bounded.
    for chunk in bytes.chunks(512) {
        assembler.push(chunk);
        while let Some(item) = assembler.poll() {
            handle(item, &mut out)?;
        }
    }
    assembler.finish();
    while let Some(item) = assembler.poll() {
        handle(item, &mut out)?;
    }
    out.flush()?;
    let stats = assembler.stats();
    if stats.junk_bytes > 0 {
        eprintln!(
            "note: skipped {} bytes that start no JK frame (frames start 55 AA EB 90, 4E 57, AA 55 90 EB, or [address] 10 16 on RS485)",
            stats.junk_bytes
        );
    }
    if decoded_count == 0 && failures == 0 {
        bail!("no JK frame found in {} bytes", bytes.len());
    }
    Ok(if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_in_the_usual_spellings() {
        assert_eq!(
            parse_hex("55 aa\nEB90").unwrap(),
            vec![0x55, 0xAA, 0xEB, 0x90]
        );
        assert_eq!(
            parse_hex("0x55, 0xAA:eb;90").unwrap(),
            vec![0x55, 0xAA, 0xEB, 0x90]
        );
        let e = parse_hex("55 aa zz").unwrap_err();
        assert!(e.contains("\"zz\" (item 3"), "{e}");
        assert!(parse_hex("55a").unwrap_err().contains("\"55a\""));
    }
}
