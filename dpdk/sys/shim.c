/* rte_errno is a per-lcore (__thread) variable behind a macro, which bindgen
 * cannot bind; read and write it through these functions instead. */
#include <rte_errno.h>

int dpdk_sys_rte_errno(void) { return rte_errno; }

void dpdk_sys_set_rte_errno(int value) { rte_errno = value; }

/* sizeof and field offsets of struct rte_mbuf as the C compiler sees them,
 * to check the bindgen layout the safe API reads fields through. */
#include <stddef.h>
#include <rte_mbuf.h>

void dpdk_sys_rte_mbuf_layout(size_t out[8])
{
	out[0] = sizeof(struct rte_mbuf);
	out[1] = offsetof(struct rte_mbuf, buf_addr);
	out[2] = offsetof(struct rte_mbuf, data_off);
	out[3] = offsetof(struct rte_mbuf, nb_segs);
	out[4] = offsetof(struct rte_mbuf, port);
	out[5] = offsetof(struct rte_mbuf, pkt_len);
	out[6] = offsetof(struct rte_mbuf, data_len);
	out[7] = offsetof(struct rte_mbuf, buf_len);
}
