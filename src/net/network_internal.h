/* src/net/network_internal.h - what the builder and the model code see of a kiln_network. */
#ifndef KILN_NET_NETWORK_INTERNAL_H
#define KILN_NET_NETWORK_INTERNAL_H

#include "kiln/network.h"
#include "net/graph.h"

struct kiln_network {
  kiln_graph g;
};

const kiln_graph *kiln_network_graph(const kiln_network *net);
/* Add a layer with n_out outputs (dtypes NULL: float). Returns the first output's tensor id. */
int32_t kiln_network_add_layer_(kiln_network *net, const char *name, kiln_op op, int32_t n_in,
                                const int32_t *in, const kiln_op_params *p, int32_t n_out,
                                const kiln_dtype *out_dtypes);

#endif
