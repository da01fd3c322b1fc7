/* RMSprop, AdaGrad and Adadelta, instantiated for every instruction set and storage combination. */
#include "common.h"

#define IMPL "rms_loops.h"
#include "instances.h"

DEFINE_TABLE(rmsprop);
DEFINE_TABLE(adagrad);
DEFINE_TABLE(adadelta);
