use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{IommuMode, PciAddress, Result, Sysfs, VfioError};

/// The vfio-pci driver's name in `/sys/bus/pci/drivers`.
pub const VFIO_PCI: &str = "vfio-pci";

/// How long to wait for the kernel after a rebind.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// Upper bound for the driver to appear, and then its device node or netdev.
    pub timeout: Duration,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            timeout: Duration::from_secs(5),
        }
    }
}

/// Polls `ready` with a short, growing pause until it says yes or time is up.
fn wait_until(
    what: impl FnOnce() -> String,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        if ready()? {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(VfioError::Timeout {
                what: what(),
                waited,
            });
        }
        sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

impl Sysfs {
    /// Detaches the device from its driver (`drivers/<drv>/unbind`). No-op when unbound.
    pub fn unbind(&self, addr: PciAddress) -> Result<()> {
        let dev = self.device(addr)?;
        let Some(driver) = dev.driver()? else {
            return Ok(());
        };
        self.write(&self.driver_dir(&driver).join("unbind"), &addr.to_string())
    }

    /// Sets `driver_override`; `None` clears it (the kernel takes a lone newline).
    pub fn set_driver_override(&self, addr: PciAddress, driver: Option<&str>) -> Result<()> {
        let dev = self.device(addr)?;
        self.write(&dev.dir().join("driver_override"), driver.unwrap_or("\n"))
    }

    /// Asks the PCI core to match a driver to the device (`/sys/bus/pci/drivers_probe`).
    pub fn drivers_probe(&self, addr: PciAddress) -> Result<()> {
        self.write(&self.drivers_probe_path(), &addr.to_string())
    }

    /// Rebinds the device to `driver`: `driver_override`, `unbind`, `drivers_probe`,
    /// then waits until the `driver` link names it.
    ///
    /// `driver_override` is left set to `driver`; callers that hand the device
    /// back restore the previous value with [`Sysfs::set_driver_override`].
    pub fn bind_driver(&self, addr: PciAddress, driver: &str, opts: BindOptions) -> Result<()> {
        let driver_dir = self.driver_dir(driver);
        if !driver_dir.exists() {
            return Err(VfioError::DriverMissing {
                driver: driver.to_string(),
                path: driver_dir,
            });
        }
        let dev = self.device(addr)?;
        if dev.driver()?.as_deref() == Some(driver) {
            return Ok(());
        }
        self.set_driver_override(addr, Some(driver))?;
        self.unbind(addr)?;
        self.drivers_probe(addr)?;
        self.wait_driver(addr, driver, opts)
    }

    /// Waits until the device's `driver` link names `driver`.
    pub fn wait_driver(&self, addr: PciAddress, driver: &str, opts: BindOptions) -> Result<()> {
        let dev = self.device(addr)?;
        wait_until(
            || format!("{addr} to bind to {driver} (the kernel log may say why it did not)"),
            opts.timeout,
            || Ok(dev.driver()?.as_deref() == Some(driver)),
        )
    }

    /// The vfio group node user space opens for `group`.
    pub fn vfio_group_path(&self, group: u32, mode: IommuMode) -> PathBuf {
        match mode {
            IommuMode::Iommu => self.dev_vfio_dir().join(group.to_string()),
            IommuMode::NoIommu => self.dev_vfio_dir().join(format!("noiommu-{group}")),
        }
    }

    /// Waits for `/dev/vfio/<group>` (or `noiommu-<group>`) after a bind to vfio-pci.
    pub fn wait_vfio_group_node(
        &self,
        group: u32,
        mode: IommuMode,
        opts: BindOptions,
    ) -> Result<PathBuf> {
        let path = self.vfio_group_path(group, mode);
        wait_until(
            || format!("{} to appear", path.display()),
            opts.timeout,
            || Ok(path.exists()),
        )?;
        Ok(path)
    }

    /// Waits until the device has a network interface again, and returns its names.
    pub fn wait_netdev(&self, addr: PciAddress, opts: BindOptions) -> Result<Vec<String>> {
        let dev = self.device(addr)?;
        let mut names = Vec::new();
        wait_until(
            || format!("{addr} to get its network interface back"),
            opts.timeout,
            || {
                names = dev.net_names()?;
                Ok(!names.is_empty())
            },
        )?;
        Ok(names)
    }

    /// Hands a device back to whatever driver the kernel matches for it:
    /// `driver_override` cleared, `unbind`, `drivers_probe`, then waits for
    /// a driver other than the one it left.
    pub fn reprobe(&self, addr: PciAddress, opts: BindOptions) -> Result<()> {
        let dev = self.device(addr)?;
        let old = dev.driver()?;
        self.set_driver_override(addr, None)?;
        self.unbind(addr)?;
        self.drivers_probe(addr)?;
        wait_until(
            || format!("{addr} to bind to its own driver (the kernel log may say why it did not)"),
            opts.timeout,
            || Ok(dev.driver()?.is_some_and(|d| Some(&d) != old.as_ref())),
        )
    }

    /// Gives a device back to `driver` (or leaves it unbound for `None`) and
    /// restores `driver_override` to `override_`.
    pub fn restore_driver(
        &self,
        addr: PciAddress,
        driver: Option<&str>,
        override_: Option<&str>,
        opts: BindOptions,
    ) -> Result<()> {
        match driver {
            Some(d) => self.bind_driver(addr, d, opts)?,
            None => self.unbind(addr)?,
        }
        let dev = self.device(addr)?;
        if dev.driver_override()?.as_deref() != override_ {
            self.set_driver_override(addr, override_)?;
        }
        Ok(())
    }
}
