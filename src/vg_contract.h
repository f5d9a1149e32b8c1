/*
 * vg_contract.h -- every integer the compiled core and the Python layer must agree on, named
 * in one place.
 *
 * vg_kernels.h includes this header right after its two enums (the activation ids and the
 * fields of a layer's measurement row); the optimiser kinds, the hyper-parameter slots of an
 * update, the normalisation kinds and the fields derived from a measurement row are defined
 * here.  The name tables below give each id its name; _engine exports them in id order
 * (ACTIVATIONS, STATISTICS, OPTIMIZERS, HYPERPARAMETERS, NORMS, DERIVED) and vgcore/core/_contract.py checks them against the Python side
 * when vgcore is imported.  Add an id to an enum and its name here, then teach the Python
 * side (CONTRIBUTING.md says where): until both sides agree, `import vgcore` fails with the
 * names that differ, instead of a kernel writing past a buffer sized by the other side.
 */
#ifndef VG_CONTRACT_H
#define VG_CONTRACT_H

#ifndef VG_KERNELS_H
#error "include vg_kernels.h: it includes vg_contract.h after its enums"
#endif

/* Optimiser updates (vg_opt_update's `kind`). */
enum {
    VG_OPT_SGD = 0,     /* SGD, momentum, Nesterov */
    VG_OPT_RMSPROP,
    VG_OPT_ADAGRAD,
    VG_OPT_ADAM,        /* Adam, and AdamW when the weight decay is decoupled */
    VG_N_OPTIMIZERS
};

/* Slots of the hyper-parameter vector of an update (doubles). */
enum {
    VG_HP_LR = 0,           /* learning rate */
    VG_HP_GSCALE,           /* global-norm clipping factor, 1 = none */
    VG_HP_CLIP_VALUE,       /* per-entry clipping bound, 0 = none */
    VG_HP_WEIGHT_DECAY,
    VG_HP_BETA1,            /* momentum (SGD), alpha (RMSprop), beta1 (Adam) */
    VG_HP_BETA2,            /* beta2 (Adam) */
    VG_HP_EPS,
    VG_HP_NESTEROV,         /* != 0: Nesterov momentum */
    VG_HP_BIAS_CORR1,       /* 1 - beta1^t (Adam) */
    VG_HP_BIAS_CORR2,       /* 1 - beta2^t (Adam) */
    VG_HP_DECOUPLED,        /* != 0: decoupled weight decay (AdamW) */
    VG_HP_FIRST_STEP,       /* != 0: the first step (the momentum buffer starts at g) */
    VG_N_HYPER
};

/* Normalisation of a hidden layer's pre-activations. */
enum { VG_NORM_NONE = 0, VG_NORM_BATCH, VG_NORM_LAYER, VG_N_NORMS };

/* The quantities derived from the measurement rows (vg_derive.h; vgcore.flow's FIELDS, then
 * its per-step scalars): a per-layer field gives one number per layer, a scalar one per step. */
enum {
    VG_FLD_DELTA_RMS = 0, VG_FLD_DELTA_NORM, VG_FLD_GRAD_NORM, VG_FLD_BIAS_GRAD_NORM,
    VG_FLD_WEIGHT_NORM, VG_FLD_BIAS_NORM, VG_FLD_GRAD_TO_WEIGHT, VG_FLD_UPDATE_TO_WEIGHT,
    VG_FLD_PREACT_RMS, VG_FLD_ACT_MEAN, VG_FLD_ACT_STD, VG_FLD_SATURATED_FRACTION,
    VG_FLD_ZERO_DERIVATIVE_FRACTION, VG_FLD_DEAD_FRACTION, VG_FLD_GAIN, VG_FLD_GSNR,
    VG_FLD_UNDERFLOW_FRACTION,
    VG_N_LAYER_FIELDS,
    VG_FLD_GRAD_RATIO = VG_N_LAYER_FIELDS, VG_FLD_DELTA_RATIO, VG_FLD_NONFINITE_FORWARD_LAYER,
    VG_FLD_NONFINITE_BACKWARD_LAYER,
    VG_N_FIELDS
};

/* The names, indexed by id (designated initialisers: an id without a name is NULL, which
 * _engine refuses when it loads). */
static const char *vg_activation_names[VG_N_ACTIVATIONS] = {
    [VG_IDENTITY] = "identity", [VG_SIGMOID] = "sigmoid", [VG_TANH] = "tanh",
    [VG_RELU] = "relu", [VG_LEAKY_RELU] = "leaky_relu", [VG_ELU] = "elu", [VG_SELU] = "selu",
    [VG_GELU] = "gelu", [VG_SOFTPLUS] = "softplus", [VG_SOFTSIGN] = "softsign",
    [VG_SILU] = "silu", [VG_HARD_TANH] = "hard_tanh",
};

static const char *vg_stat_names[VG_N_STATS] = {
    [VG_ST_SUM_H2] = "sum_h2", [VG_ST_SUM_A] = "sum_a", [VG_ST_SUM_A2] = "sum_a2",
    [VG_ST_SUM_D2] = "sum_d2", [VG_ST_N_SAT] = "n_sat", [VG_ST_N_ZERO] = "n_zero",
    [VG_ST_N_DEAD] = "n_dead", [VG_ST_W2] = "w2", [VG_ST_DW2] = "dw2", [VG_ST_B2] = "b2",
    [VG_ST_DB2] = "db2", [VG_ST_UW2] = "uw2", [VG_ST_N_UNDERFLOW] = "n_underflow",
};

static const char *vg_optimizer_names[VG_N_OPTIMIZERS] = {
    [VG_OPT_SGD] = "sgd", [VG_OPT_RMSPROP] = "rmsprop", [VG_OPT_ADAGRAD] = "adagrad",
    [VG_OPT_ADAM] = "adam",
};

static const char *vg_hyper_names[VG_N_HYPER] = {
    [VG_HP_LR] = "lr", [VG_HP_GSCALE] = "gscale", [VG_HP_CLIP_VALUE] = "clip_value",
    [VG_HP_WEIGHT_DECAY] = "weight_decay", [VG_HP_BETA1] = "beta1", [VG_HP_BETA2] = "beta2",
    [VG_HP_EPS] = "eps", [VG_HP_NESTEROV] = "nesterov", [VG_HP_BIAS_CORR1] = "bias_corr1",
    [VG_HP_BIAS_CORR2] = "bias_corr2", [VG_HP_DECOUPLED] = "decoupled",
    [VG_HP_FIRST_STEP] = "first_step",
};

static const char *vg_norm_names[VG_N_NORMS] = {
    [VG_NORM_NONE] = "none", [VG_NORM_BATCH] = "batch", [VG_NORM_LAYER] = "layer",
};

static const char *vg_field_names[VG_N_FIELDS] = {
    [VG_FLD_DELTA_RMS] = "delta_rms", [VG_FLD_DELTA_NORM] = "delta_norm",
    [VG_FLD_GRAD_NORM] = "grad_norm", [VG_FLD_BIAS_GRAD_NORM] = "bias_grad_norm",
    [VG_FLD_WEIGHT_NORM] = "weight_norm", [VG_FLD_BIAS_NORM] = "bias_norm",
    [VG_FLD_GRAD_TO_WEIGHT] = "grad_to_weight", [VG_FLD_UPDATE_TO_WEIGHT] = "update_to_weight",
    [VG_FLD_PREACT_RMS] = "preact_rms", [VG_FLD_ACT_MEAN] = "act_mean",
    [VG_FLD_ACT_STD] = "act_std", [VG_FLD_SATURATED_FRACTION] = "saturated_fraction",
    [VG_FLD_ZERO_DERIVATIVE_FRACTION] = "zero_derivative_fraction",
    [VG_FLD_DEAD_FRACTION] = "dead_fraction", [VG_FLD_GAIN] = "gain", [VG_FLD_GSNR] = "gsnr",
    [VG_FLD_UNDERFLOW_FRACTION] = "underflow_fraction", [VG_FLD_GRAD_RATIO] = "grad_ratio",
    [VG_FLD_DELTA_RATIO] = "delta_ratio",
    [VG_FLD_NONFINITE_FORWARD_LAYER] = "nonfinite_forward_layer",
    [VG_FLD_NONFINITE_BACKWARD_LAYER] = "nonfinite_backward_layer",
};

#endif /* VG_CONTRACT_H */
