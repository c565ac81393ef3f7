//! Discards every write at once. With it, a run measures the engine alone: generation, buffer
//! handling and scheduling, with no storage behind them.

use super::{Capabilities, Listing, ObjectInfo, ObjectReader, ObjectWriter, Sink, WriteReq};
use crate::error::{Error, Failure, Result};
use crate::object::identity::Identity;

#[derive(Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities::unconstrained("null")
    }

    fn keeps_data(&self) -> bool {
        false
    }

    /// A region of nothing: `/dev/zero`, which takes every write and reads back zeros, so a job
    /// measures the operations engine alone. (Read-backs are not done: nothing is kept.)
    fn open_region(&self, name: &str, req: &super::RegionRequest) -> Result<super::OpenRegion> {
        if req.end == 0 {
            return Err(Error::sink("null", format!("a region '{name}' on null:// needs its size")));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/zero")
            .map_err(|e| Error::io("/dev/zero", e))?;
        Ok(super::OpenRegion { file, path: "null".into(), len: req.end, identity: None, direct: false, align: 1 })
    }

    fn describe(&self) -> String {
        "null".into()
    }

    fn create(&self, name: &str, _size: Option<u64>, _identity: &Identity) -> Result<Box<dyn ObjectWriter + '_>> {
        super::check_name(name, &self.capabilities())?;
        Ok(Box::new(NullObject))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>> {
        Err(Error::sink("null", format!("cannot read back '{name}': the null sink keeps nothing")))
    }

    fn stat(&self, _name: &str) -> Result<Option<ObjectInfo>> {
        Ok(None)
    }

    fn delete(&self, name: &str) -> Result<()> {
        Err(Error::storage(
            Failure::NotFound,
            "null",
            format!("cannot delete '{name}': the null sink keeps nothing"),
            None,
        ))
    }

    fn list(&self, _prefix: &str, _stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        Ok(Listing::default())
    }
}

struct NullObject;

impl ObjectWriter for NullObject {
    fn submit(&mut self, req: WriteReq) {
        drop(req.buf);
        (req.done)(Ok(()));
    }

    fn finish(self: Box<Self>, _size: u64) -> Result<()> {
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}
