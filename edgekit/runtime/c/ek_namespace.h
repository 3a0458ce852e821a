/* edgekit runtime: symbol prefixes. `edgekit codegen --prefix P` writes its own copy next to the
 * model, defining every external ek_ function as P_ek_..., so two models link into one firmware;
 * this one, for compiling the runtime on its own, renames nothing. */
#ifndef EK_NAMESPACE_H
#define EK_NAMESPACE_H
#endif
