/* src/builder/builder_internal.h - the builder's passes, each over a kiln_graph it owns. */
#ifndef KILN_BUILDER_INTERNAL_H
#define KILN_BUILDER_INTERNAL_H

#include "kiln/builder.h"
#include "net/graph.h"

/* Per-tensor sizes over all profiles (bytes of the largest shape seen). */
typedef struct kiln_shape_set {
  int32_t n_points;       /* 3 per profile: min, opt, max */
  kiln_dims *dims;        /* [n_points][n_tensors] */
} kiln_shape_set;

kiln_status kiln_builder_check_profiles(kiln_graph *g);
/* Weight-only quantization (quantize.c): matmul -> matmul_wq per p->weight_only; counts in r. */
kiln_status kiln_builder_quantize_weights(kiln_graph *g, const kiln_build_params *p, kiln_build_report *r);
/* Float tensors to `precision`, except the fp32 scales of matmul_wq layers. */
kiln_status kiln_builder_set_precision(kiln_graph *g, kiln_dtype precision);
int32_t kiln_builder_fuse(kiln_graph *g);                 /* returns layers removed */
kiln_status kiln_builder_compact(kiln_graph *g);         /* drop unused tensors and dead layers */
kiln_status kiln_builder_infer_all(const kiln_graph *g, kiln_shape_set *s);
void kiln_shape_set_free(kiln_shape_set *s);
kiln_status kiln_builder_plan_memory(kiln_graph *g, const kiln_shape_set *s, size_t *naive_bytes);
/* Choose tactics (times candidates on the GPU for CUDA targets). */
kiln_status kiln_builder_choose_tactics(kiln_graph *g, const kiln_shape_set *s, const kiln_build_params *p,
                                        kiln_build_report *r);

#endif
