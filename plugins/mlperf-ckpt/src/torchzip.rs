//! The file format of `torch.save`: a zip archive (stored, not compressed) whose `data.pkl` is a
//! pickle of the saved dict, with each tensor's storage in a record of its own (`data/0`, `data/1`
//! …), every record's data aligned to 64 bytes (PyTorch's `kFieldAlignment`, padded with an extra
//! field as its writer does), then `version` and `.data/serialization_id`; zip64 records where a
//! size or an offset needs them. `torch.load` opens it; so does any zip reader.
//!
//! The tensor bytes are synthetic payload the host generates and the plugin never sees, so their
//! records carry CRC-32 0 — as `torch.save` writes them with
//! `torch.serialization.set_crc32_options(False)`; `torch.load` does not check them. The records
//! the plugin makes (the pickle, the byte order, the version) carry their real CRC-32.
//!
//! The pickle is protocol 2, as `torch.save` writes it: each tensor is
//! `torch._utils._rebuild_tensor_v2(storage, 0, (n,), (1,), False, OrderedDict())` with its storage
//! a persistent id `('storage', torch.HalfStorage | torch.FloatStorage, key, 'cpu', n)`.

use crate::model::{Dtype, Tensor};

/// Where the records live inside the archive (`torch.save` to an open file names it "archive").
const PREFIX: &str = "archive/";
const ALIGN: u64 = 64;
const U32_MAX: u64 = 0xFFFF_FFFF;

enum Data {
    Bytes(Vec<u8>),
    /// Synthetic tensor bytes, this many.
    Payload(u64),
}

struct Record {
    /// The local header (and its extra fields) that precedes the data.
    header: Vec<u8>,
    offset: u64,
    data: Data,
}

impl Record {
    fn len(&self) -> u64 {
        match &self.data {
            Data::Bytes(b) => b.len() as u64,
            Data::Payload(n) => *n,
        }
    }
}

/// One `.pt` file laid out: its records and its central directory, every offset known before a
/// byte is written.
pub struct Container {
    records: Vec<Record>,
    tail_offset: u64,
    tail: Vec<u8>,
}

impl Container {
    /// The archive `torch.save` writes for a dict of `tensors` (nested by their paths).
    /// `serialization_id` is the record PyTorch fills with a per-save number.
    pub fn new(tensors: &[Tensor], serialization_id: u64) -> Container {
        let mut entries: Vec<(String, Data, bool)> = vec![("data.pkl".into(), Data::Bytes(pickle(tensors)), false)];
        entries.push(("byteorder".into(), Data::Bytes(b"little".to_vec()), false));
        for (key, t) in tensors.iter().enumerate() {
            entries.push((format!("data/{key}"), Data::Payload(t.numel * t.dtype.bytes()), true));
        }
        entries.push(("version".into(), Data::Bytes(b"3\n".to_vec()), false));
        entries.push((
            ".data/serialization_id".into(),
            Data::Bytes(format!("{serialization_id:019}").into_bytes()),
            false,
        ));

        let mut records = Vec::new();
        let mut central = Vec::new();
        let mut offset = 0u64;
        for (name, data, _) in entries {
            let name = format!("{PREFIX}{name}");
            let (len, crc) = match &data {
                Data::Bytes(b) => (b.len() as u64, crc32(b)),
                Data::Payload(n) => (*n, 0),
            };
            let big = len >= U32_MAX;
            let mut extra = Vec::new();
            if big {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&16u16.to_le_bytes());
                extra.extend_from_slice(&len.to_le_bytes());
                extra.extend_from_slice(&len.to_le_bytes());
            }
            // Pad with an extra field ("FB", as PyTorch's writer) so the data starts aligned.
            let unpadded = offset + 30 + name.len() as u64 + extra.len() as u64;
            if unpadded % ALIGN != 0 {
                let pad = (ALIGN - (unpadded + 4) % ALIGN) % ALIGN;
                extra.extend_from_slice(&0x4246u16.to_le_bytes());
                extra.extend_from_slice(&(pad as u16).to_le_bytes());
                extra.extend_from_slice(&vec![b'Z'; pad as usize]);
            }
            let needed: u16 = if big || offset >= U32_MAX { 45 } else { 20 };
            let mut h = Vec::with_capacity(30 + name.len() + extra.len());
            h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            h.extend_from_slice(&needed.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&0u16.to_le_bytes()); // stored
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
            h.extend_from_slice(&crc.to_le_bytes());
            let size32 = if big { U32_MAX as u32 } else { len as u32 };
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(&extra);

            // The central directory entry: zip64 fields for what does not fit in 32 bits.
            let mut z64 = Vec::new();
            if big {
                z64.extend_from_slice(&len.to_le_bytes());
                z64.extend_from_slice(&len.to_le_bytes());
            }
            if offset >= U32_MAX {
                z64.extend_from_slice(&offset.to_le_bytes());
            }
            let mut cextra = Vec::new();
            if !z64.is_empty() {
                cextra.extend_from_slice(&1u16.to_le_bytes());
                cextra.extend_from_slice(&(z64.len() as u16).to_le_bytes());
                cextra.extend_from_slice(&z64);
            }
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&needed.to_le_bytes()); // made by
            central.extend_from_slice(&needed.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&0x21u16.to_le_bytes());
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&size32.to_le_bytes());
            central.extend_from_slice(&size32.to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(cextra.len() as u16).to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes()); // comment
            central.extend_from_slice(&0u16.to_le_bytes()); // disk
            central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            central.extend_from_slice(&(offset.min(U32_MAX) as u32).to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            central.extend_from_slice(&cextra);

            let rec = Record { header: h, offset, data };
            offset += rec.header.len() as u64 + rec.len();
            records.push(rec);
        }
        let count = records.len() as u64;
        let (cd_offset, cd_size) = (offset, central.len() as u64);
        let mut tail = central;
        if cd_offset >= U32_MAX {
            let eocd64 = cd_offset + cd_size;
            tail.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            tail.extend_from_slice(&44u64.to_le_bytes());
            tail.extend_from_slice(&45u16.to_le_bytes());
            tail.extend_from_slice(&45u16.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&cd_size.to_le_bytes());
            tail.extend_from_slice(&cd_offset.to_le_bytes());
            tail.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&eocd64.to_le_bytes());
            tail.extend_from_slice(&1u32.to_le_bytes());
        }
        tail.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&(count as u16).to_le_bytes());
        tail.extend_from_slice(&(count as u16).to_le_bytes());
        tail.extend_from_slice(&(cd_size as u32).to_le_bytes());
        tail.extend_from_slice(&(cd_offset.min(U32_MAX) as u32).to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        Container { records, tail_offset: cd_offset, tail }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.tail_offset + self.tail.len() as u64
    }

    /// Describes the file on `t`: each record's header and data, then the central directory.
    pub fn write(&self, t: &mut dgen_plugin_sdk::Target) -> Result<(), String> {
        for r in &self.records {
            t.write(&r.header)?;
            match &r.data {
                Data::Bytes(b) => t.write(b)?,
                Data::Payload(n) => t.fill(*n)?,
            }
        }
        t.write(&self.tail)
    }

    /// The byte ranges `torch.load` reads, in its order: the central directory at the end, then each
    /// record (its local header and data) from the first — every byte of the file once.
    pub fn loads(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.tail_offset, self.tail.len() as u64)];
        v.extend(self.records.iter().map(|r| (r.offset, r.header.len() as u64 + r.len())));
        v
    }
}

/// CRC-32 (IEEE 802.3, zip's), bit by bit: only the plugin's few small records need it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

/// A protocol-2 pickle writer for exactly what `torch.save` emits for a dict of 1-D tensors.
struct Pickle(Vec<u8>);

impl Pickle {
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, n: u64) {
        if n < 0x100 {
            self.0.extend_from_slice(&[b'K', n as u8]);
        } else if n < 0x1_0000 {
            self.0.push(b'M');
            self.0.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n < 0x8000_0000 {
            self.0.push(b'J');
            self.0.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, as short as it goes.
            let mut b = n.to_le_bytes().to_vec();
            while b.len() > 1 && b[b.len() - 1] == 0 && b[b.len() - 2] & 0x80 == 0 {
                b.pop();
            }
            if b[b.len() - 1] & 0x80 != 0 {
                b.push(0);
            }
            self.0.extend_from_slice(&[0x8a, b.len() as u8]);
            self.0.extend_from_slice(&b);
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(module.as_bytes());
        self.0.push(b'\n');
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'\n');
    }
    fn tensor(&mut self, key: usize, t: &Tensor) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.0.push(b'(');
        self.0.push(b'(');
        self.str("storage");
        self.global("torch", if t.dtype == Dtype::F16 { "HalfStorage" } else { "FloatStorage" });
        self.str(&key.to_string());
        self.str("cpu");
        self.int(t.numel);
        self.0.push(b't');
        self.0.push(b'Q'); // BINPERSID
        self.int(0);
        self.int(t.numel);
        self.0.push(0x85); // TUPLE1
        self.int(1);
        self.0.push(0x85);
        self.0.push(0x89); // NEWFALSE
        self.global("collections", "OrderedDict");
        self.0.push(b')');
        self.0.push(b'R');
        self.0.push(b't');
        self.0.push(b'R');
    }
}

/// The pickle of the dict the tensors' paths describe (insertion order kept, as Python's dicts).
fn pickle(tensors: &[Tensor]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]);
    // Open dicts, from the top: the key each was entered under.
    let mut open: Vec<String> = Vec::new();
    p.0.extend_from_slice(b"}(");
    for (key, t) in tensors.iter().enumerate() {
        let (dirs, leaf) = t.path.split_at(t.path.len() - 1);
        let common = open.iter().zip(dirs).take_while(|(a, b)| a == b).count();
        while open.len() > common {
            open.pop();
            p.0.extend_from_slice(b"u");
        }
        for d in &dirs[common..] {
            p.str(d);
            p.0.extend_from_slice(b"}(");
            open.push(d.clone());
        }
        p.str(&leaf[0]);
        p.tensor(key, t);
    }
    for _ in 0..open.len() {
        p.0.push(b'u');
    }
    p.0.extend_from_slice(b"u.");
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_a_known_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
