pub mod doctor;
pub mod exec;
pub mod list;
pub mod replay;
pub mod run;
pub mod shell;
