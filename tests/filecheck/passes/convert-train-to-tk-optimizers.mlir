// RUN: tinymlir-opt %s -p convert-train-to-tk | filecheck %s
// RUN: tinymlir-opt %s -p convert-train-to-tk | tinymlir-opt | filecheck %s

// Momentum SGD on a quantized weight trained on channels [0, 2] and Adam on its bias: the
// optimizer properties go onto the tk ops (which call the kernels' *_opt variants); the
// float32 state of the weight, given in the weight's shape, keeps just the trained rows
// (rows 0 and 2), in the weight's OHWI layout; the Adam step counter's increment stays.
// CHECK:      train.param @layer0.weight trainable : tensor<3x1x1x2x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>
// CHECK:      train.param @layer0.weight.momentum : tensor<2x1x1x2xf32> = dense<{{\[\[\[\[}}1.000000e+00, 2.000000e+00]]], {{\[\[\[}}5.000000e+00, 6.000000e+00]]]]> : tensor<2x1x1x2xf32>
// CHECK:      train.param @layer0.bias.m : tensor<3xf32>
// CHECK:      train.param @layer0.bias.v : tensor<3xf32>
// CHECK:      train.param @adam.step : tensor<i32>
// CHECK:      train.increment @adam.step
// CHECK:      tk.conv_weight_grad_sgd @layer0.weight, %{{.*}}, %{{.*}}, %{{.*}} stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 0 channels [0, 2] rounding "nearest" {x_scale = [1.000000e+00 : f32], factor = [2.000000e+00 : f32, 4.000000e+00 : f32, 8.000000e+00 : f32], momentum = 9.000000e-01 : f32, velocity = @layer0.weight.momentum}
// CHECK:      tk.bias_grad_sgd @layer0.bias, %{{.*}}, %{{.*}} rounding "stochastic" rng @layer0.bias.rng {factor = [2.000000e+00 : f32, 4.000000e+00 : f32, 8.000000e+00 : f32], beta1 = 9.000000e-01 : f32, beta2 = 9.990000e-01 : f32, eps = 1.000000e-08 : f32, m = @layer0.bias.m, v = @layer0.bias.v, step = @adam.step}
// CHECK-NOT:  train.{{(conv2d|bias_grad)}}
builtin.module {
  train.param @layer0.weight trainable : tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>> = dense<[[[[1]], [[2]]], [[[3]], [[4]]], [[[5]], [[6]]]]> : tensor<3x2x1x1xi8>
  train.param @layer0.weight.momentum : tensor<3x2x1x1xf32> = dense<[[[[1.0]], [[2.0]]], [[[3.0]], [[4.0]]], [[[5.0]], [[6.0]]]]> : tensor<3x2x1x1xf32>
  train.param @layer0.bias trainable : tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>> = dense<[10, -20, 30]> : tensor<3xi32>
  train.param @layer0.bias.m : tensor<3xf32> = dense<0.0> : tensor<3xf32>
  train.param @layer0.bias.v : tensor<3xf32> = dense<0.0> : tensor<3xf32>
  train.param @layer0.bias.rng : tensor<i32> = dense<7> : tensor<i32>
  train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
  func.func @train_step(%x: tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, %g: tensor<1x3x2x2xf32>, %lr: f32) -> tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:0>> {
    train.increment @adam.step
    %w = train.load @layer0.weight : tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>
    %b = train.load @layer0.bias : tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>>
    %y = quant.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, act_min = 0 : i32, act_max = 100 : i32} : (tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, tensor<3x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>, tensor<3x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0, 0.125:0}>>) -> tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:0>>
    train.conv2d_weight_grad_sgd @layer0.weight, %g, %x, %lr {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 0, 2>, momentum = 0.9 : f32, velocity = @layer0.weight.momentum, rounding = "nearest", scales = array<i64: 1, -2>} : tensor<1x3x2x2xf32>, tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>
    train.bias_grad_sgd @layer0.bias, %g, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @layer0.bias.m, v = @layer0.bias.v, step = @adam.step, rounding = "stochastic", rng = @layer0.bias.rng, scales = array<i64: 1, -2>} : tensor<1x3x2x2xf32>
    func.return %y : tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:0>>
  }
}
