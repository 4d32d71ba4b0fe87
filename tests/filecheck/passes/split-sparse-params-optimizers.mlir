// RUN: tinymlir-opt %s -p split-sparse-params | filecheck %s
// RUN: tinymlir-opt %s -p split-sparse-params | tinymlir-opt | filecheck %s

// split-sparse-params with Adam state: the weight's state already holds its trained rows
// [1, 3] (what convert-train-to-tk makes), so it becomes @w.train's, renamed after it; the
// bias's state (one element per channel) splits with the bias into rows [1, 3] and [0, 2].
// CHECK:      train.param @w.train trainable : tensor<2x1x1x2xi8>
// CHECK:      train.param @w.train.m : tensor<2x1x1x2xf32> = dense<{{\[\[\[\[}}1.000000e+00, 2.000000e+00]]], {{\[\[\[}}3.000000e+00, 4.000000e+00]]]]>
// CHECK:      train.param @w.train.v : tensor<2x1x1x2xf32> = dense<5.000000e-01>
// CHECK:      train.param @b.train trainable : tensor<2xi32> = dense<[20, 40]>
// CHECK:      train.param @b.rest trainable : tensor<2xi32> = dense<[10, 30]>
// CHECK:      train.param @b.train.m : tensor<2xf32> = dense<[1.000000e+00, 3.000000e+00]>
// CHECK-NEXT: train.param @b.rest.m : tensor<2xf32> = dense<[0.000000e+00, 2.000000e+00]>
// CHECK-NEXT: train.param @b.train.v : tensor<2xf32> = dense<[5.000000e+00, 7.000000e+00]>
// CHECK-NEXT: train.param @b.rest.v : tensor<2xf32> = dense<[4.000000e+00, 6.000000e+00]>
// CHECK:      tk.conv_weight_grad_sgd @w.train, {{.*}} m = @w.train.m, v = @w.train.v, step = @adam.step}
// CHECK:      tk.bias_grad_sgd @b.train, {{.*}} m = @b.train.m, v = @b.train.v, step = @adam.step}
// CHECK:      tk.bias_grad_sgd @b.rest, {{.*}} m = @b.rest.m, v = @b.rest.v, step = @adam.step}
builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<[[[[1, 2]]], [[[3, 4]]], [[[5, 6]]], [[[7, 8]]]]> : tensor<4x1x1x2xi8>
  train.param @w.m : tensor<2x1x1x2xf32> = dense<[[[[1.0, 2.0]]], [[[3.0, 4.0]]]]> : tensor<2x1x1x2xf32>
  train.param @w.v : tensor<2x1x1x2xf32> = dense<0.5> : tensor<2x1x1x2xf32>
  train.param @b trainable : tensor<4xi32> = dense<[10, 20, 30, 40]> : tensor<4xi32>
  train.param @b.m : tensor<4xf32> = dense<[0.0, 1.0, 2.0, 3.0]> : tensor<4xf32>
  train.param @b.v : tensor<4xf32> = dense<[4.0, 5.0, 6.0, 7.0]> : tensor<4xf32>
  train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
  func.func @train_step(%x: tensor<1x2x2x2xi8>, %g: tensor<1x2x2x4xf32>, %lr: f32) -> (tensor<1x2x2x4xi8>, tensor<1x2x2x2xf32>) {
    %w = train.load @w : tensor<4x1x1x2xi8>
    %b = train.load @b : tensor<4xi32>
    %y = cmsisnn.convolve_wrapper_s8 %x, %w, %b input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741825, 1073741826, 1073741827] shifts [0, -1, -2, -3] : (tensor<1x2x2x2xi8>, tensor<4x1x1x2xi8>, tensor<4xi32>) -> tensor<1x2x2x4xi8>
    %dx = tk.conv_input_grad %g, %w stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [0.5 : f32, 0.25 : f32, 0.5 : f32, 0.125 : f32]} : (tensor<1x2x2x4xf32>, tensor<4x1x1x2xi8>) -> tensor<1x2x2x2xf32>
    tk.conv_weight_grad_sgd @w, %g, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 0 channels [1, 3] rounding "nearest" {x_scale = [0.5 : f32], factor = [2.0 : f32, 4.0 : f32, 2.0 : f32, 8.0 : f32], beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @w.m, v = @w.v, step = @adam.step} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [2.0 : f32, 4.0 : f32, 2.0 : f32, 8.0 : f32], beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 1.0e-08 : f32, m = @b.m, v = @b.v, step = @adam.step} : tensor<1x2x2x4xf32>
    func.return %y, %dx : tensor<1x2x2x4xi8>, tensor<1x2x2x2xf32>
  }
}
