// RUN: tinymlir-opt %s -p convert-train-to-tk | filecheck %s
// RUN: tinymlir-opt %s -p convert-train-to-tk | tinymlir-opt | filecheck %s

// A quantized 1x1 convolution's backward and fused updates: the weight param moves to
// OHWI, each train op becomes its tk kernel on NHWC data behind nn.transpose adaptors,
// the clamp mask is read from the int8 output with the conv's activation range, and the
// scales [1, -2] of the updates become one float32 factor per channel (s^-1).
// CHECK:      train.param @layer0.weight trainable : tensor<3x1x1x2x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>> = dense<{{\[\[\[\[}}1, 2]]], {{\[\[\[}}3, 4]]], {{\[\[\[}}5, 6]]]]>
// CHECK:      %[[W:.*]] = train.load @layer0.weight : tensor<3x1x1x2x
// CHECK:      %[[WV:.*]] = nn.transpose %[[W]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK:      %[[Y:.*]] = quant.conv2d %{{.*}}, %[[WV]], %{{.*}}
// CHECK:      %[[YN:.*]] = nn.transpose %[[Y]] {perm = array<i64: 0, 2, 3, 1>}
// CHECK:      %[[M:.*]] = tk.output_mask %[[YN]] activation(0, 100) : (tensor<1x2x2x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x2x3xi1>
// CHECK:      %[[GM:.*]] = tk.mask_grad %{{.*}}, %[[M]]
// CHECK:      %[[DX:.*]] = tk.conv_input_grad %[[GM]], %[[W]] stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [5.000000e-01 : f32, 2.500000e-01 : f32, 1.250000e-01 : f32]}
// CHECK:      tk.conv_weight_grad_sgd @layer0.weight, %[[GM]], %{{.*}}, %{{.*}} stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 0 channels [0, 2] rounding "nearest" {x_scale = [1.000000e+00 : f32], factor = [2.000000e+00 : f32, 4.000000e+00 : f32, 8.000000e+00 : f32]}
// CHECK:      tk.bias_grad_sgd @layer0.bias, %[[GM]], %{{.*}} rounding "nearest" {factor = [2.000000e+00 : f32, 4.000000e+00 : f32, 8.000000e+00 : f32]}
// CHECK-NOT:  train.{{(clamp_mask|mask_grad|conv2d|bias_grad)}}
builtin.module {
  train.param @layer0.weight trainable : tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>> = dense<[[[[1]], [[2]]], [[[3]], [[4]]], [[[5]], [[6]]]]> : tensor<3x2x1x1xi8>
  train.param @layer0.bias trainable : tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>> = dense<[10, -20, 30]> : tensor<3xi32>
  func.func @train_step(%x: tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, %g: tensor<1x3x2x2xf32>, %lr: f32) -> tensor<1x2x2x2xf32> {
    %w = train.load @layer0.weight : tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>
    %b = train.load @layer0.bias : tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>>
    %y = quant.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, act_min = 0 : i32, act_max = 100 : i32} : (tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>, tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>>) -> tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:0>>
    %m = train.clamp_mask %y from %x, %w, %b : (tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>, tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>>) -> tensor<1x3x2x2xi1>
    %gm = train.mask_grad %g, %m : (tensor<1x3x2x2xf32>, tensor<1x3x2x2xi1>) -> tensor<1x3x2x2xf32>
    %dx = train.conv2d_input_grad %gm, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x2x2xf32>, tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>) -> tensor<1x2x2x2xf32>
    train.conv2d_weight_grad_sgd @layer0.weight, %gm, %x, %lr {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 0, 2>, rounding = "nearest", scales = array<i64: 1, -2>} : tensor<1x3x2x2xf32>, tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>
    train.bias_grad_sgd @layer0.bias, %gm, %lr {rounding = "nearest", scales = array<i64: 1, -2>} : tensor<1x3x2x2xf32>
    func.return %dx : tensor<1x2x2x2xf32>
  }
}
