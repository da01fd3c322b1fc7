/* SGD and Momentum, instantiated for every instruction set and storage combination. */
#include "common.h"

#define IMPL "sgd_loops.h"
#include "instances.h"

DEFINE_TABLE(sgd);
DEFINE_TABLE(momentum);
