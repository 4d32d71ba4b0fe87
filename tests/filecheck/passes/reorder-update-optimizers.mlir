// RUN: tinymlir-opt %s -p reorder-update | filecheck %s

// Momentum SGD and Adam on quantized params fuse like plain SGD: the fused ops carry the
// update's state and hyper-parameters; the scale_grad exponents become `scales`.
// CHECK:      func.func @train_step
// CHECK:        train.increment @adam.step
// CHECK:        %{{.*}} = quant.conv2d
// CHECK-NEXT:   train.conv2d_weight_grad_sgd @w, %g, %x, %lr {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1>, beta1 = 9.000000e-01 : f32, beta2 = 9.990000e-01 : f32, eps = 1.000000e-08 : f32, m = @w.m, v = @w.v, step = @adam.step, rounding = "nearest", scales = array<i64: 1, -2>}
// CHECK-NEXT:   train.bias_grad_sgd @b, %g, %lr {momentum = 5.000000e-01 : f32, velocity = @b.momentum, rounding = "nearest", scales = array<i64: 1>}
// CHECK-NOT:    train.adam
// CHECK-NOT:    train.sgd
builtin.module {
  train.param @w trainable : tensor<2x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0}>> = dense<1> : tensor<2x2x1x1xi8>
  train.param @w.m : tensor<1x2x1x1xf32> = dense<0.0> : tensor<1x2x1x1xf32>
  train.param @w.v : tensor<2x2x1x1xf32> = dense<0.0> : tensor<2x2x1x1xf32>
  train.param @b trainable : tensor<2x!quant.uniform<i32:f32:0, {0.5:0, 0.25:0}>> = dense<0> : tensor<2xi32>
  train.param @b.momentum : tensor<2xf32> = dense<0.0> : tensor<2xf32>
  train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
  func.func @train_step(%x: tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, %g: tensor<1x2x2x2xf32>, %lr: f32) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>> {
    train.increment @adam.step
    %w = train.load @w : tensor<2x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0}>>
    %y = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>, tensor<2x2x1x1x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0}>>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>
    %dw = train.conv2d_weight_grad %g, %x {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, channels = array<i64: 1>} : (tensor<1x2x2x2xf32>, tensor<1x2x2x2x!quant.uniform<i8:f32, 1.0:0>>) -> tensor<1x2x1x1xf32>
    %db = train.bias_grad %g : (tensor<1x2x2x2xf32>) -> tensor<2xf32>
    %sw = train.scale_grad @w, %dw {exponent = 1 : i64, channels = array<i64: 1>} : (tensor<1x2x1x1xf32>) -> tensor<1x2x1x1xf32>
    %qw = train.scale_grad @w, %sw {exponent = -2 : i64, channels = array<i64: 1>} : (tensor<1x2x1x1xf32>) -> tensor<1x2x1x1xf32>
    %sb = train.scale_grad @b, %db {exponent = 1 : i64} : (tensor<2xf32>) -> tensor<2xf32>
    train.adam @w, %qw, %lr {beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @w.m, v = @w.v, step = @adam.step, channels = array<i64: 1>, rounding = "nearest"} : tensor<1x2x1x1xf32>
    train.sgd @b, %sb, %lr {momentum = 0.5 : f32, velocity = @b.momentum, rounding = "nearest"} : tensor<2xf32>
    func.return %y : tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>
  }
}
