//! The x86 backend (placeholder).
