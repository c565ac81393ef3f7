//! The object model: what an object's bytes are, as a layout of plugin-made bytes, synthetic fills and
//! zero placeholders ([`Recipe`]), or a plain stretch of a generator stream ([`Content::Stream`]).
//! Bytes at any offset are a pure function of the layout, so the executor fills chunks in parallel,
//! `verify` regenerates any range, and nothing of an object is ever stored to be compared later.

pub mod identity;

pub use identity::Identity;

use crate::generator::Generator;
use std::sync::Arc;

/// What an object's bytes are.
#[derive(Clone, Debug)]
pub enum Content {
    /// Bytes `[offset, offset + size)` of one stream of the executor's generator.
    Stream { stream: u64, offset: u64 },
    /// A layout of plugin bytes and synthetic fills (see [`Recipe`]).
    Recipe(Arc<Recipe>),
}

impl Content {
    /// Bytes `[at, at + buf.len())` of the object.
    pub fn fill(&self, gen: &Generator, at: u64, buf: &mut [u8]) {
        match self {
            Content::Stream { stream, offset } => gen.fill(*stream, offset + at, buf),
            Content::Recipe(r) => r.fill(at, buf),
        }
    }
}

/// A piece of an object's layout.
#[derive(Clone, Debug)]
pub enum Segment {
    /// Literal bytes (headers, footers, host-computed fields once resolved).
    Bytes(Arc<[u8]>),
    /// `len` bytes of `stream` from `offset`, made by `gen`.
    Fill { gen: Arc<Generator>, stream: u64, offset: u64, len: u64 },
    /// `len` zero bytes held as a count, not as memory: a reserved region or a host-computed field
    /// before it is resolved.
    Zeros(u64),
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Fill { len, .. } | Segment::Zeros(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An object as a sequence of segments; bytes at any offset can be produced independently, so the
/// executor fills chunks in parallel and `verify` regenerates any range.
#[derive(Clone, Debug, Default)]
pub struct Recipe {
    /// (object offset, segment), in order, contiguous.
    segments: Vec<(u64, Segment)>,
    size: u64,
}

impl Recipe {
    pub fn push(&mut self, seg: Segment) {
        let len = seg.len();
        if len == 0 {
            return;
        }
        self.segments.push((self.size, seg));
        self.size += len;
    }

    /// Appends `len` bytes of `stream` from `offset`; when the last segment is a fill of the same
    /// stream that ends exactly at `offset`, it grows instead, so a run of consecutive fills costs one
    /// segment however many calls made it. True if it merged.
    pub fn push_fill(&mut self, gen: &Arc<Generator>, stream: u64, offset: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        if let Some((_, Segment::Fill { stream: s, offset: o, len: l, .. })) = self.segments.last_mut() {
            if *s == stream && *o + *l == offset {
                *l += len;
                self.size += len;
                return true;
            }
        }
        self.push(Segment::Fill { gen: gen.clone(), stream, offset, len });
        false
    }

    /// The last segment, if it is a fill: (stream, end offset in the stream).
    pub fn trailing_fill(&self) -> Option<(u64, u64)> {
        match self.segments.last() {
            Some((_, Segment::Fill { stream, offset, len, .. })) => Some((*stream, offset + len)),
            _ => None,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().map(|(_, s)| s)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Object offset where segment `idx` starts.
    pub fn segment_offset(&self, idx: usize) -> u64 {
        self.segments.get(idx).map_or(self.size, |(at, _)| *at)
    }

    /// Replaces segment `idx` with one of the same length (patches, resolved fields).
    pub fn replace(&mut self, idx: usize, seg: Segment) {
        assert_eq!(seg.len(), self.segments[idx].1.len(), "a replacement keeps the segment's length");
        self.segments[idx].1 = seg;
    }

    /// Bytes `[at, at + buf.len())`.
    pub fn fill(&self, at: u64, buf: &mut [u8]) {
        let end = at + buf.len() as u64;
        // First segment that ends after `at`.
        let first = self.segments.partition_point(|(start, seg)| start + seg.len() <= at);
        for (start, seg) in &self.segments[first..] {
            if *start >= end {
                break;
            }
            let from = at.max(*start);
            let to = end.min(start + seg.len());
            let out = &mut buf[(from - at) as usize..(to - at) as usize];
            let within = from - start;
            match seg {
                Segment::Bytes(b) => out.copy_from_slice(&b[within as usize..(within as usize + out.len())]),
                Segment::Fill { gen, stream, offset, .. } => gen.fill(*stream, offset + within, out),
                Segment::Zeros(_) => out.fill(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_fills_merge_into_one_segment() {
        let gen = Arc::new(Generator::new(1, crate::Profile::default()));
        let mut r = Recipe::default();
        for i in 0..1000 {
            r.push_fill(&gen, 0, i, 1);
        }
        assert_eq!(r.segment_count(), 1);
        assert!(!r.push_fill(&gen, 0, 4096, 10), "a gap in the stream is a new segment");
        assert!(!r.push_fill(&gen, 1, 4106, 10), "another stream is a new segment");
        assert_eq!((r.segment_count(), r.size()), (3, 1020));
    }
}
