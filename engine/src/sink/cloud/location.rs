//! Where objects live in a store: the bucket or container, the prefix, keys and URLs.

/// `scheme://root/prefix`: a bucket or container and the prefix below it, and how object names
/// become keys and addresses there.
pub struct Location {
    scheme: &'static str,
    /// The bucket or container.
    pub root: String,
    prefix: String,
}

impl Location {
    pub fn new(scheme: &'static str, root: String, prefix: String) -> Location {
        Location { scheme, root, prefix }
    }

    /// The store's key for an object name.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// An object's address, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("{}://{}/{}", self.scheme, self.root, self.key(name))
    }

    /// The target's address.
    pub fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}://{}", self.scheme, self.root)
        } else {
            format!("{}://{}/{}", self.scheme, self.root, self.prefix)
        }
    }
}
