pub mod attempts;
pub mod stress;
