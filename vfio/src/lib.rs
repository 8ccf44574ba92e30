//! PCI sysfs.
