mod select;

pub use select::*;
