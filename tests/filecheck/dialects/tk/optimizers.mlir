// The tk update ops with momentum SGD or Adam print and parse back to themselves. Their
// state params: float32, one element per updated element (the selected channels only).
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s

builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<1> : tensor<4x1x1x2xi8>
  train.param @w.momentum : tensor<2x1x1x2xf32> = dense<0.0> : tensor<2x1x1x2xf32>
  train.param @dw trainable : tensor<1x3x3x2xi8> = dense<1> : tensor<1x3x3x2xi8>
  train.param @dw.m : tensor<1x3x3x1xf32> = dense<0.0> : tensor<1x3x3x1xf32>
  train.param @dw.v : tensor<1x3x3x1xf32> = dense<0.0> : tensor<1x3x3x1xf32>
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  train.param @b.m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  train.param @b.v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
  func.func @ops(%g: tensor<1x2x2x4xf32>, %x: tensor<1x2x2x2xi8>, %g2: tensor<1x2x2x2xf32>, %lr: f32) {
    // CHECK: train.increment @adam.step
    train.increment @adam.step
    // CHECK: tk.conv_weight_grad_sgd @w, %{{.*}}, %{{.*}}, %{{.*}} stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 128 channels [1, 3] rounding "nearest" {x_scale = [5.000000e-01 : f32], factor = [1.000000e+00 : f32, 1.000000e+00 : f32, 1.000000e+00 : f32, 1.000000e+00 : f32], momentum = 9.000000e-01 : f32, velocity = @w.momentum}
    tk.conv_weight_grad_sgd @w, %g, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 128 channels [1, 3] rounding "nearest" {x_scale = [0.5 : f32], factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], momentum = 0.9 : f32, velocity = @w.momentum} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    // CHECK: tk.depthwise_conv_weight_grad_sgd @dw, %{{.*}}, %{{.*}}, %{{.*}} stride [1, 1] padding [1, 1] dilation [1, 1] x_offset 0 channels [1] rounding "nearest" {x_scale = [5.000000e-01 : f32], factor = [1.000000e+00 : f32, 3.000000e+00 : f32], beta1 = 9.000000e-01 : f32, beta2 = 9.990000e-01 : f32, eps = 1.000000e-08 : f32, m = @dw.m, v = @dw.v, step = @adam.step}
    tk.depthwise_conv_weight_grad_sgd @dw, %g2, %x, %lr stride [1, 1] padding [1, 1] dilation [1, 1] x_offset 0 channels [1] rounding "nearest" {x_scale = [0.5 : f32], factor = [1.0 : f32, 3.0 : f32], beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @dw.m, v = @dw.v, step = @adam.step} : tensor<1x2x2x2xf32>, tensor<1x2x2x2xi8>
    // CHECK: tk.bias_grad_sgd @b, %{{.*}}, %{{.*}} rounding "nearest" {factor = [1.000000e+00 : f32, 1.000000e+00 : f32, 1.000000e+00 : f32, 1.000000e+00 : f32], beta1 = 9.000000e-01 : f32, beta2 = 9.990000e-01 : f32, eps = 1.000000e-08 : f32, m = @b.m, v = @b.v, step = @adam.step}
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @b.m, v = @b.v, step = @adam.step} : tensor<1x2x2x4xf32>
    func.return
  }
}
