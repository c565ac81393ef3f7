//! What every object the engine writes carries where its store keeps it (an extended attribute on
//! files, user metadata on S3 and Azure), so that later calls can tell the engine's objects from
//! anything else under a root.
//!
//! An identity is a digest of what the object holds as the engine describes it: for a layout, its
//! plugin-made bytes and, for each synthetic stretch, the generator (seed, data profile, rank lane),
//! stream and offsets; for a plain stream, the same without a layout. It is not a digest of the
//! bytes (that would cost a pass over them) but it names them exactly: same identity, same bytes.
//!
//! The plugin host acts on an object only when its stored identity says the engine wrote it — and,
//! for an object a plugin `declare`s, that it holds what the declaration describes; anything else
//! is "not found" to the plugin. So a plugin learns nothing of a file the engine did not write, not
//! even that it exists, and cannot delete or overwrite one.

use crate::generator::Generator;
use crate::object::{Content, Recipe, Segment};
use sha2::{Digest, Sha256};
use std::fmt;

/// The extended attribute on files.
pub const XATTR: &str = "user.dgen.id";
/// The user-metadata key on object stores (`x-amz-meta-dgen-id`, `x-ms-meta-dgenid`: Azure's
/// metadata names are C# identifiers, so no dash there).
pub const META_KEY: &str = "dgen-id";
pub const AZURE_META_KEY: &str = "dgenid";
/// The form a stored identity takes: this prefix and 32 hex digits.
const PREFIX: &str = "dgen1:";

/// An object's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity([u8; 16]);

impl Identity {
    /// The identity of an object of `size` bytes holding `content` (`gen` makes a stream's bytes).
    pub fn of(content: &Content, gen: &Generator, size: u64) -> Identity {
        match content {
            Content::Recipe(r) => Identity::of_recipe(r),
            Content::Stream { stream, offset } => {
                let mut h = Sha256::new();
                h.update(b"stream");
                h.update(gen.fingerprint());
                for v in [*stream, *offset, size] {
                    h.update(v.to_le_bytes());
                }
                Identity::from_digest(h)
            }
        }
    }

    /// The identity of a layout. Its canonical form does not depend on how its segments were cut:
    /// consecutive literal bytes are one run, consecutive stretches of one stream are one stretch.
    pub fn of_recipe(recipe: &Recipe) -> Identity {
        enum Run<'a> {
            None,
            Literal(Sha256, u64),
            Fill(&'a Generator, u64, u64, u64),
        }
        let mut h = Sha256::new();
        h.update(b"recipe");
        h.update(recipe.size().to_le_bytes());
        let close = |h: &mut Sha256, run: Run<'_>| match run {
            Run::None => {}
            Run::Literal(l, n) => {
                h.update(b"L");
                h.update(n.to_le_bytes());
                h.update(l.finalize());
            }
            Run::Fill(g, stream, offset, len) => {
                h.update(b"F");
                h.update(g.fingerprint());
                for v in [stream, offset, len] {
                    h.update(v.to_le_bytes());
                }
            }
        };
        let mut run = Run::None;
        for seg in recipe.segments() {
            run = match (run, seg) {
                (Run::Literal(mut l, n), Segment::Bytes(b)) => {
                    l.update(b);
                    Run::Literal(l, n + b.len() as u64)
                }
                (Run::Literal(mut l, n), Segment::Zeros(z)) => {
                    feed_zeros(&mut l, *z);
                    Run::Literal(l, n + z)
                }
                (Run::Fill(g, s, o, len), Segment::Fill { gen, stream, offset, len: more })
                    if *stream == s && o + len == *offset && g.fingerprint() == gen.fingerprint() =>
                {
                    Run::Fill(g, s, o, len + more)
                }
                (previous, seg) => {
                    close(&mut h, previous);
                    match seg {
                        Segment::Bytes(b) => {
                            let mut l = Sha256::new();
                            l.update(b);
                            Run::Literal(l, b.len() as u64)
                        }
                        Segment::Zeros(z) => {
                            let mut l = Sha256::new();
                            feed_zeros(&mut l, *z);
                            Run::Literal(l, *z)
                        }
                        Segment::Fill { gen, stream, offset, len } => Run::Fill(gen, *stream, *offset, *len),
                    }
                }
            };
        }
        close(&mut h, run);
        Identity::from_digest(h)
    }

    /// The identity of a region written in place (the operations engine): its generator, stream and
    /// size. It says which blocks the file holds at *some* generation each; which one, the run's
    /// generation map (or its journal) says.
    pub fn of_region(gen: &Generator, stream: u64, size: u64) -> Identity {
        let mut h = Sha256::new();
        h.update(b"region");
        h.update(gen.fingerprint());
        for v in [stream, size] {
            h.update(v.to_le_bytes());
        }
        Identity::from_digest(h)
    }

    /// What a region's journal (its generation map on disk) carries.
    pub fn journal() -> Identity {
        let mut h = Sha256::new();
        h.update(b"region journal");
        Identity::from_digest(h)
    }

    /// What a region carries until its first whole write: the engine's, holding nothing known.
    pub fn incomplete() -> Identity {
        let mut h = Sha256::new();
        h.update(b"region, not written whole yet");
        Identity::from_digest(h)
    }

    /// The identity of what is made from an object of this identity by a named transformation
    /// (`zstd -3`).
    pub fn derived(&self, how: &str) -> Identity {
        let mut h = Sha256::new();
        h.update(b"derived");
        h.update(self.0);
        h.update(how.as_bytes());
        Identity::from_digest(h)
    }

    fn from_digest(h: Sha256) -> Identity {
        let d = h.finalize();
        Identity(d[..16].try_into().expect("16 of 32 bytes"))
    }

    /// As stored: `dgen1:` and 32 hex digits.
    pub fn stored(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}")
    }

    /// A stored value read back; `None` when it is not an identity of this form.
    pub fn parse(stored: &[u8]) -> Option<Identity> {
        let s = std::str::from_utf8(stored).ok()?.trim();
        let hex = s.strip_prefix(PREFIX)?;
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Identity(out))
    }
}

fn feed_zeros(h: &mut Sha256, mut n: u64) {
    const Z: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(Z.len() as u64) as usize;
        h.update(&Z[..k]);
        n -= k as u64;
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn identity_names_the_content_not_how_it_was_cut() {
        let gen = Arc::new(Generator::new(7, crate::Profile::default()));
        let mut a = Recipe::default();
        a.push(Segment::Bytes(Arc::from(&b"head"[..])));
        a.push(Segment::Bytes(Arc::from(&b"er"[..])));
        a.push_fill(&gen, 0, 0, 100);
        let mut b = Recipe::default();
        b.push(Segment::Bytes(Arc::from(&b"header"[..])));
        b.push(Segment::Fill { gen: gen.clone(), stream: 0, offset: 0, len: 60 });
        b.push(Segment::Fill { gen: gen.clone(), stream: 0, offset: 60, len: 40 });
        assert_eq!(Identity::of_recipe(&a), Identity::of_recipe(&b));
        let mut c = Recipe::default();
        c.push(Segment::Bytes(Arc::from(&b"headex"[..])));
        c.push_fill(&gen, 0, 0, 100);
        assert_ne!(Identity::of_recipe(&a), Identity::of_recipe(&c), "other bytes");
        let other = Arc::new(Generator::new(8, crate::Profile::default()));
        let mut d = Recipe::default();
        d.push(Segment::Bytes(Arc::from(&b"header"[..])));
        d.push_fill(&other, 0, 0, 100);
        assert_ne!(Identity::of_recipe(&a), Identity::of_recipe(&d), "another seed");
        let lane = Arc::new(Generator::new(7, crate::Profile::default()).for_rank(1, 2));
        let mut e = Recipe::default();
        e.push(Segment::Bytes(Arc::from(&b"header"[..])));
        e.push_fill(&lane, 0, 0, 100);
        assert_ne!(Identity::of_recipe(&a), Identity::of_recipe(&e), "another rank's lane");
        let id = Identity::of_recipe(&a);
        assert_eq!(Identity::parse(id.stored().as_bytes()), Some(id));
        assert_eq!(Identity::parse(b"dgen1:zz"), None);
    }
}
