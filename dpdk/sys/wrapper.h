/* The DPDK headers dpdk-sys binds. rte_config.h is force-included by build.rs
 * (Debian's libdpdk.pc carries `-include rte_config.h`, which pkg-config drops). */
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>
